// A real SIP-over-WebSocket peer for the integration tests (issue 20): JsSIP under Node,
// its WebSocket from jssip-node-websocket. Driven over stdin/stdout with JSON lines.
//
//   node jssip_peer.js '{"ws": "ws://127.0.0.1:8080/", "uri": "sip:romeo@sip.localhost",
//                        "password": "romeo"}'
//
// stdout, one JSON object a line: {"event": "registered"}, {"event": "registrationFailed",
// "cause": ...}, {"event": "sent", "id": ...}, {"event": "sendFailed", "id": ..., "cause",
// "status"}, {"event": "message", "from": ..., "body": ..., "contentType": ...},
// {"event": "notify", "id": ..., "body": ..., "state": ...}, {"event": "log", ...}.
// stdin, one JSON command a line: {"cmd": "message", "id": ..., "to": ..., "body": ...},
// {"cmd": "subscribe", "id": ..., "to": ..., "event": "presence"}, {"cmd": "quit"}.
'use strict';

const readline = require('readline');
const JsSIP = require('jssip');
const NodeWebSocket = require('jssip-node-websocket');

const opts = JSON.parse(process.argv[2]);

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

const socket = new NodeWebSocket(opts.ws, { origin: opts.origin });
const ua = new JsSIP.UA({
  sockets: [socket],
  uri: opts.uri,
  password: opts.password,
  register: true,
  register_expires: 600,
  session_timers: false,
  connection_recovery_min_interval: 1,
  connection_recovery_max_interval: 2,
  user_agent: 'JsSIP-node-test',
});

ua.on('connected', () => out({ event: 'connected' }));
ua.on('disconnected', () => out({ event: 'disconnected' }));
ua.on('registered', (e) => out({ event: 'registered', contact: ua.contact.toString() }));
ua.on('registrationFailed', (e) =>
  out({ event: 'registrationFailed', cause: e.cause, status: e.response && e.response.status_code })
);
ua.on('newMessage', (e) => {
  if (e.originator !== 'remote') {
    return;
  }
  const req = e.request;
  out({
    event: 'message',
    from: req.from.uri.toString(),
    body: req.body,
    contentType: req.getHeader('Content-Type'),
    via: req.getHeader('Via'),
  });
});

function message(cmd) {
  ua.sendMessage(cmd.to, cmd.body, {
    contentType: cmd.contentType || 'text/plain',
    eventHandlers: {
      succeeded: (e) => out({ event: 'sent', id: cmd.id, status: e.response.status_code }),
      failed: (e) =>
        out({
          event: 'sendFailed',
          id: cmd.id,
          cause: e.cause,
          status: e.response ? e.response.status_code : null,
        }),
    },
  });
}

function subscribe(cmd) {
  const event = cmd.event || 'presence';
  const accept = cmd.accept || 'application/pidf+xml';
  const sub = ua.subscribe(cmd.to, event, accept, { expires: 600 });
  sub.on('active', () => out({ event: 'subscribeActive', id: cmd.id }));
  sub.on('notify', (isFinal, request, body, contentType) =>
    out({
      event: 'notify',
      id: cmd.id,
      final: isFinal,
      body: body || '',
      contentType: contentType || null,
      state: request.getHeader('Subscription-State'),
    })
  );
  sub.on('terminated', (code, reason) =>
    out({ event: 'subscribeTerminated', id: cmd.id, code: code, reason: reason || null })
  );
  sub.subscribe();
}

const input = readline.createInterface({ input: process.stdin });
input.on('line', (line) => {
  if (!line.trim()) {
    return;
  }
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (err) {
    out({ event: 'error', error: String(err) });
    return;
  }
  if (cmd.cmd === 'message') {
    message(cmd);
  } else if (cmd.cmd === 'subscribe') {
    subscribe(cmd);
  } else if (cmd.cmd === 'quit') {
    ua.stop();
    setTimeout(() => process.exit(0), 500);
  } else {
    out({ event: 'error', error: 'unknown command ' + cmd.cmd });
  }
});
input.on('close', () => {
  ua.stop();
  setTimeout(() => process.exit(0), 500);
});

ua.start();
