"""The egress proxy's agent: the program that runs in the desktop, in one `docker exec` as the
desktop's user, for as long as its egress (`desktop/egress.py`).

It listens on 127.0.0.1:PORT and carries every connection it accepts over the exec's stdin (raw)
and stdout in the tunnel's frames (`desktop/_egress_tunnel.py`, whose kinds and header it repeats):
it says READY once it listens, OPEN for each new connection, then DATA, EOF, CREDIT and CLOSE
both ways, sending at most WINDOW bytes of a connection the host has not credited back. It exits
when its stdin ends, which frees the port.
"""

# Runs in the desktop: `python3 -I -S -c AGENT PORT WINDOW CHUNK`, the standard library only.
AGENT = """\
import asyncio, os, struct, sys
HELLO, READY, OPEN, DATA, EOF, CREDIT, CLOSE = range(1, 8)
H = struct.Struct(">BII")
PORT, WINDOW, CHUNK = (int(a) for a in sys.argv[1:4])
conns, last, out = {}, 0, None

def send(kind, cid, payload=b""):
    out.write(H.pack(kind, cid, len(payload)) + payload)

class Conn:
    def __init__(self, cid, reader, writer):
        self.cid, self.reader, self.writer = cid, reader, writer
        self.credit, self.more = WINDOW, asyncio.Event()
        self.inbox, self.tasks = asyncio.Queue(), ()

def reset(c, tell):
    if conns.pop(c.cid, None) is None:
        return
    for task in c.tasks:
        task.cancel()
    c.writer.transport.abort()
    if tell:
        send(CLOSE, c.cid)

async def up(c):
    while True:
        while c.credit <= 0:
            c.more.clear()
            await c.more.wait()
        data = await c.reader.read(min(CHUNK, c.credit))
        if not data:
            return send(EOF, c.cid)
        c.credit -= len(data)
        send(DATA, c.cid, data)
        await out.drain()

async def down(c):
    done = 0
    while (data := await c.inbox.get()) is not None:
        c.writer.write(data)
        await c.writer.drain()
        done += len(data)
        if done >= WINDOW // 4:
            send(CREDIT, c.cid, done.to_bytes(4, "big"))
            done = 0
    c.writer.write_eof()

async def guarded(c, pump):
    try:
        await pump(c)
    except OSError:
        reset(c, True)

async def serve(reader, writer):
    global last
    last += 1
    c = conns[last] = Conn(last, reader, writer)
    send(OPEN, c.cid)
    c.tasks = [asyncio.ensure_future(guarded(c, pump)) for pump in (up, down)]
    await asyncio.gather(*c.tasks, return_exceptions=True)
    if conns.pop(c.cid, None) is not None:
        writer.close()

async def main():
    global out
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(stdin), os.fdopen(0, "rb", 0))
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(1, "wb", 0))
    out = asyncio.StreamWriter(transport, protocol, None, loop)
    kind, _, size = H.unpack(await stdin.readexactly(H.size))
    await stdin.readexactly(size)
    if kind != HELLO:
        sys.exit("egress: the host did not say hello")
    await asyncio.start_server(serve, "127.0.0.1", PORT, backlog=128)
    send(READY, 0)
    while True:
        try:
            kind, cid, size = H.unpack(await stdin.readexactly(H.size))
            payload = await stdin.readexactly(size)
        except asyncio.IncompleteReadError:
            os._exit(0)
        c = conns.get(cid)
        if c is None:
            continue
        if kind == DATA:
            c.inbox.put_nowait(payload)
        elif kind == EOF:
            c.inbox.put_nowait(None)
        elif kind == CREDIT:
            c.credit += int.from_bytes(payload, "big")
            c.more.set()
        elif kind == CLOSE:
            reset(c, False)

asyncio.run(main())
"""
