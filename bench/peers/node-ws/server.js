// A chat server on the ws package, the way its users write one, as a peer
// for wsbroker's bench/run.
//
//   node server.js PORT
//
// /chat/NAME: every message goes to every connection on the same NAME, the
// sender included. /echo: every message goes back to its sender. Anything
// else is refused. Listens on 127.0.0.1 only and logs nothing per message.
//
// ws's defaults throughout, except perMessageDeflate, set to false here
// explicitly: bench/run's load generator never offers permessage-deflate,
// and the broker it is compared with then does not compress either; and
// the listen backlog, which every server in bench/run gets the same.
'use strict';

const { WebSocketServer } = require('ws');

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  console.error('usage: node server.js PORT');
  process.exit(2);
}

const rooms = new Map(); // room name -> Set of its connections

function join(ws, name) {
  let room = rooms.get(name);
  if (!room) {
    room = new Set();
    rooms.set(name, room);
  }
  room.add(ws);
  ws.on('message', (data, isBinary) => {
    for (const peer of room) {
      if (peer.readyState === peer.OPEN) peer.send(data, { binary: isBinary });
    }
  });
  ws.on('close', () => {
    room.delete(ws);
    if (room.size === 0 && rooms.get(name) === room) rooms.delete(name);
  });
}

function echo(ws) {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
}

// backlog: wsbroker's (1024) instead of Node's 511
const wss = new WebSocketServer({ host: '127.0.0.1', port, backlog: 1024, perMessageDeflate: false });

wss.on('connection', (ws, req) => {
  const path = req.url.split('?')[0];
  const chat = /^\/chat\/([^/]+)$/.exec(path);
  ws.on('error', () => {}); // a client gone mid-frame: its close event follows
  if (chat) join(ws, chat[1]);
  else if (path === '/echo') echo(ws);
  else ws.close(1008, 'no such route');
});

wss.on('listening', () => console.error('node-ws: listening on 127.0.0.1:' + port));

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => process.exit(0));
}
