"""The peer to beat: an asyncio `Protocol` echo server on uvloop (or on plain asyncio with
--asyncio).  `python uvloop_echo.py HOST PORT [--asyncio]` prints `listening on HOST:PORT`."""
import asyncio
import sys


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def serve(host, port):
    server = await asyncio.get_running_loop().create_server(Echo, host, port, backlog=1024)
    print("listening on %s:%d" % (host, port), flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    host, port = sys.argv[1], int(sys.argv[2])
    if "--asyncio" in sys.argv[3:]:
        asyncio.run(serve(host, port))
    else:
        import uvloop
        uvloop.run(serve(host, port))
