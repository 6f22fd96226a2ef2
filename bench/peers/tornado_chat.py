#!/usr/bin/python3
"""A chat server the way Tornado's users write one, as a peer for bench/run.

    tornado_chat.py PORT

/chat/NAME: every message goes to every connection on the same NAME, the
sender included. /echo: every message goes back to its sender. Listens on
127.0.0.1 only; logs warnings and errors only, nothing per message.
"""

import logging
import signal
import sys

import tornado.httpserver
import tornado.ioloop
import tornado.netutil
import tornado.web
import tornado.websocket


class ChatHandler(tornado.websocket.WebSocketHandler):
    # room name -> the connections on it, shared by every connection
    rooms = {}

    def open(self, name):
        self.room = self.rooms.setdefault(name, set())
        self.room.add(self)

    def on_message(self, message):
        binary = isinstance(message, bytes)
        for conn in list(self.room):
            try:
                conn.write_message(message, binary=binary)
            except tornado.websocket.WebSocketClosedError:
                pass                # closing; on_close takes it out of the room

    def on_close(self):
        self.room.discard(self)
        if not self.room:
            self.rooms.pop(self.path_args[0], None)


class EchoHandler(tornado.websocket.WebSocketHandler):
    def on_message(self, message):
        self.write_message(message, binary=isinstance(message, bytes))


def main():
    if len(sys.argv) != 2:
        raise SystemExit("usage: tornado_chat.py PORT")
    logging.basicConfig(level=logging.WARNING)
    app = tornado.web.Application([
        (r"/chat/([^/]+)", ChatHandler),
        (r"/echo", EchoHandler),
    ])
    # The listen backlog wsbroker has (1024) instead of Tornado's 128, which
    # hundreds of connects at once overflow
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets(tornado.netutil.bind_sockets(int(sys.argv[1]), "127.0.0.1", backlog=1024))
    loop = tornado.ioloop.IOLoop.current()
    # SIGTERM ends the loop, and the process exits 0 like the other servers
    signal.signal(signal.SIGTERM, lambda sig, frame: loop.add_callback_from_signal(loop.stop))
    loop.start()


if __name__ == "__main__":
    main()
