#!/usr/bin/env node
'use strict';
// lwm2m-node-lib's LwM2M client, for the interop tests: registers to
// HOST:PORT as ENDPOINT with a Device object instance /3/0 whose
// Manufacturer (0) is MANUFACTURER, and answers the server from 127.0.0.1.
//
//   node client.js HOST PORT ENDPOINT MANUFACTURER [MAX_RUN_SECONDS]
//
// Prints JSON lines on stdout:
//   {"event":"registered","location":..,"port":N}
//   {"event":"read","path":..,"value":..}
//   {"event":"write","path":..,"value":..}
//   {"event":"execute","path":..,"args":..}
//   {"event":"unregistered"}
//   {"event":"error","op":..,"message":..}
//   {"event":"updated","port":N}                        (after an "update" line on stdin)
// When stdin closes it De-registers and exits.
const { emit, boundLifetime } = require('./loopback');
const lwm2m = require('lwm2m-node-lib');

const client = lwm2m.client;
const [host, portArg, endpoint, manufacturer, maxRunArg] = process.argv.slice(2);
const port = Number(portArg);
if (!host || !Number.isInteger(port) || !endpoint || manufacturer === undefined) {
    process.stderr.write('usage: node client.js HOST PORT ENDPOINT MANUFACTURER [MAX_RUN_SECONDS]\n');
    process.exit(2);
}
boundLifetime(Number(maxRunArg || 60));

client.init({
    // The library reads the top-level level but applies the client's.
    logLevel: 'FATAL',
    client: {
        // Registration lifetime (lt), seconds.
        lifetime: '60',
        version: '1.0',
        logLevel: 'FATAL',
        observe: { period: 3000 },
        ipProtocol: 'udp4',
        serverProtocol: 'udp4',
        formats: [],
        writeFormat: 'text/plain',
    },
});

function fail(op, error) {
    emit('error', { op: op, message: String(error && (error.message || error.name || error)) });
    process.exit(1);
}

function path(objectType, objectId, resourceId) {
    return '/' + objectType + '/' + objectId + '/' + resourceId;
}

let deviceInfo = null;

const registry = client.registry;
registry.create('/3/0', (e) => {
    if (e) { fail('create', e); }
    const resources = [
        ['0', manufacturer],       // Manufacturer
        ['1', 'lwm2m-node-lib'],   // Model Number
        ['14', '+01:00'],          // UTC Offset
        ['15', 'Europe/Madrid'],   // Timezone
    ];
    const set = (i) => {
        if (i === resources.length) {
            register();
            return;
        }
        registry.setResource('/3/0', resources[i][0], resources[i][1], (err) => {
            if (err) { fail('setResource', err); }
            set(i + 1);
        });
    };
    set(0);
});

function register() {
    client.register(host, port, '', endpoint, (error, info) => {
        if (error) { fail('register', error); }
        deviceInfo = info;
        client.setHandler(info.serverInfo, 'read', (objectType, objectId, resourceId, value, callback) => {
            emit('read', { path: path(objectType, objectId, resourceId), value: String(value) });
            callback(null, value);
        });
        client.setHandler(info.serverInfo, 'write', (objectType, objectId, resourceId, value, callback) => {
            emit('write', { path: path(objectType, objectId, resourceId), value: String(value) });
            callback(null);
        });
        client.setHandler(info.serverInfo, 'execute', (objectType, objectId, resourceId, args, callback) => {
            emit('execute', { path: path(objectType, objectId, resourceId), args: args ? String(args) : null });
            callback(null);
        });
        emit('registered', { location: info.location, port: info.localPort });
    });
}

// Commands, one a line: "update" sends a registration Update.
let pending = '';
process.stdin.on('data', (chunk) => {
    pending += chunk.toString();
    let nl;
    while ((nl = pending.indexOf('\n')) >= 0) {
        const command = pending.slice(0, nl).trim();
        pending = pending.slice(nl + 1);
        if (command === 'update' && deviceInfo) {
            client.update(deviceInfo, (error) => {
                if (error) {
                    emit('error', { op: 'update', message: String(error.message || error.name || error) });
                } else {
                    emit('updated', { port: deviceInfo.localPort });
                }
            });
        }
    }
});
process.stdin.on('end', () => {
    if (!deviceInfo) {
        process.exit(0);
    }
    client.unregister(deviceInfo, (error) => {
        if (error) { fail('unregister', error); }
        emit('unregistered', {});
        process.exit(0);
    });
});
