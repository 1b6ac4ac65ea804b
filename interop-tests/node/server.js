#!/usr/bin/env node
'use strict';
// lwm2m-node-lib's LwM2M server on 127.0.0.1:PORT, for the interop tests.
//
//   node server.js PORT [MAX_RUN_SECONDS]
//
// Prints JSON lines on stdout:
//   {"event":"listening","port":N}
//   {"event":"registration","endpoint":..,"lifetime":..,"version":..,"binding":..,"payload":..}
// then, for the first device that registers, runs a scenario and prints
// one line per step:
//   {"event":"read","path":"/3/0/0","value":..}            (Manufacturer)
//   {"event":"write","path":"/3/0/15","value":..}          (Timezone, text/plain)
//   {"event":"read","path":"/3/0/15","value":..}           (read back)
//   {"event":"execute","path":"/3/0/4"}                    (Reboot)
//   {"event":"observe","path":"/3/0/13","value":..}        (Current Time, first value)
//   {"event":"done"}
// and for each later notification of the observation
//   {"event":"notification","path":"/3/0/13","value":..}
// a step that fails prints {"event":"error","op":..,"path":..,"message":..,"code":..}.
//   {"event":"unregistration","endpoint":..}               (De-register)
// Exits when stdin closes (the Rust guard) or after its lifetime.
const { emit, boundLifetime } = require('./loopback');
const lwm2m = require('lwm2m-node-lib');

const server = lwm2m.server;
const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) {
    process.stderr.write('usage: node server.js PORT [MAX_RUN_SECONDS]\n');
    process.exit(2);
}
boundLifetime(Number(process.argv[3] || 60));

// The timezone the scenario writes.
const TIMEZONE = 'Europe/Madrid';

const config = {
    port: port,
    lifetimeCheckInterval: 1000,
    udpWindow: 100,
    serverProtocol: 'udp4',
    logLevel: 'FATAL',
    defaultType: 'Device',
    types: [],
    deviceRegistry: { type: 'memory' },
    formats: [],
    // LwM2M 1.0 plain text for single resources.
    writeFormat: 'text/plain',
    defaultAcceptFormat: 'text/plain',
};

function failed(op, path, error) {
    emit('error', {
        op: op,
        path: path,
        message: String(error && (error.message || error.name || error)),
        code: error && error.code,
    });
}

function scenario(deviceId) {
    const steps = [
        (next) => server.read(deviceId, 3, 0, 0, (e, v) => {
            if (e) { failed('read', '/3/0/0', e); } else { emit('read', { path: '/3/0/0', value: v }); }
            next();
        }),
        (next) => server.write(deviceId, 3, 0, 15, TIMEZONE, (e) => {
            if (e) { failed('write', '/3/0/15', e); } else { emit('write', { path: '/3/0/15', value: TIMEZONE }); }
            next();
        }),
        (next) => server.read(deviceId, 3, 0, 15, (e, v) => {
            if (e) { failed('read', '/3/0/15', e); } else { emit('read', { path: '/3/0/15', value: v }); }
            next();
        }),
        (next) => server.execute(deviceId, 3, 0, 4, null, (e) => {
            if (e) { failed('execute', '/3/0/4', e); } else { emit('execute', { path: '/3/0/4' }); }
            next();
        }),
        (next) => server.observe(deviceId, 3, 0, 13, (value) => {
            emit('notification', { path: '/3/0/13', value: value });
        }, (e, v) => {
            if (e) { failed('observe', '/3/0/13', e); } else { emit('observe', { path: '/3/0/13', value: v }); }
            next();
        }),
    ];
    const run = (i) => {
        if (i < steps.length) {
            steps[i](() => run(i + 1));
        } else {
            emit('done', {});
        }
    };
    run(0);
}

let scenarioStarted = false;

server.start(config, (error, serverInfo) => {
    if (error) {
        failed('start', '', error);
        process.exit(1);
    }
    server.setHandler(serverInfo, 'registration', (endpoint, lifetime, version, binding, payload, callback) => {
        emit('registration', {
            endpoint: endpoint,
            lifetime: lifetime,
            version: version,
            binding: binding,
            payload: payload,
        });
        // Answer the Register first (the library sends 2.01 from this
        // callback), then manage the device.
        callback();
        if (!scenarioStarted) {
            scenarioStarted = true;
            server.getDevice(endpoint, (e, device) => {
                if (e) {
                    failed('getDevice', endpoint, e);
                } else {
                    scenario(device.id);
                }
            });
        }
    });
    server.setHandler(serverInfo, 'unregistration', (device, callback) => {
        emit('unregistration', { endpoint: device && device.name });
        callback();
    });
    server.setHandler(serverInfo, 'updateRegistration', (object, callback) => {
        emit('update', { endpoint: object && object.name });
        callback();
    });
    emit('listening', { port: port });
});

// The test closes stdin (or dies): nothing to keep, the registry is in memory.
process.stdin.on('data', () => {});
process.stdin.on('end', () => process.exit(0));
