'use strict';
// Makes every UDP socket of this process bind 127.0.0.1: lwm2m-node-lib and
// node-coap bind the wildcard address (and the client listens on the port it
// registered from), but the interop tests must stay on the loopback
// interface. Loaded before the library by the peer scripts.
const dgram = require('dgram');

const LOOPBACK = '127.0.0.1';
const originalBind = dgram.Socket.prototype.bind;

dgram.Socket.prototype.bind = function bind(...args) {
    if (args.length === 0 || typeof args[0] === 'function') {
        // bind([callback]): any port.
        args.unshift(0);
    }
    if (args[0] !== null && typeof args[0] === 'object') {
        // bind(options[, callback])
        args[0] = Object.assign({}, args[0], { address: LOOPBACK });
    } else if (args.length === 1 || typeof args[1] === 'function') {
        // bind(port[, callback])
        args.splice(1, 0, LOOPBACK);
    } else {
        // bind(port, address[, callback])
        args[1] = LOOPBACK;
    }
    return originalBind.apply(this, args);
};

/** Prints one event as a JSON line on stdout (what the Rust tests read). */
function emit(event, fields) {
    process.stdout.write(JSON.stringify(Object.assign({ event: event }, fields)) + '\n');
}

/** Ends the process after `seconds` even if nobody stops it. */
function boundLifetime(seconds) {
    setTimeout(() => {
        emit('lifetime-over', { seconds: seconds });
        process.exit(3);
    }, seconds * 1000).unref();
}

module.exports = { emit, boundLifetime, LOOPBACK };
