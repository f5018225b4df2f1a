"""TLS and plaintext on one port (``tls.server.mode=permissive``).

grpc.aio cannot tell a TLS connection from a plaintext one on the same listener, so in permissive mode
the public port belongs to a relay: each accepted connection's first byte picks the loopback listener it
is relayed to -- the gRPC server's TLS one for a TLS record (0x16), its plaintext one for anything else
(an HTTP/2 connection starts with ``PRI *``). Bytes then flow both ways unchanged, with back-pressure.

The relay is a process of its own (``python -m proxy.tls_relay``, started and restarted by
:class:`ProtocolDetector`) that moves the bytes with splice(2) through a pipe per direction, so they are
neither copied into Python nor handled on the proxy's event loop, which is the proxy's bottleneck (run
in the proxy's loop, the relay cost 20% of the throughput of 32-message sends). It stops when the proxy
process is gone.

The gRPC server sees each relayed connection as coming from 127.0.0.1; the relay tells the proxy, through
a pipe, which client is behind which of its loopback ports before it sends the connection's first byte,
and :meth:`ProtocolDetector.client_of` gives the client's own address back (for ACL white addresses and a
message's born host).
"""

from __future__ import annotations

import asyncio
import logging
import os
import selectors
import socket
import subprocess
import sys
import time

log = logging.getLogger("proxy")

LOOPBACK = "127.0.0.1"
TLS_RECORD_HANDSHAKE = 0x16  # the first byte of a ClientHello's TLS record
FIRST_BYTE_TIMEOUT_S = 120.0  # as gRPC's server handshake timeout: a silent connection is closed
_SPLICE = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK if sys.platform == "linux" else 0
_CHUNK = 1 << 16  # a pipe's default capacity


class ProtocolDetector:
    """In the proxy: the public port's socket, the relay process serving it, and the map from the relay's
    loopback ports to the clients behind them."""

    def __init__(self, plain_port: int, tls_port: int, first_byte_timeout: float = FIRST_BYTE_TIMEOUT_S) -> None:
        self.plain_port = plain_port
        self.tls_port = tls_port
        self.first_byte_timeout = first_byte_timeout
        # the relay's local port of a connection to the gRPC server -> the client's (host, port)
        self.peers: dict[int, tuple[str, int]] = {}
        self._listener: socket.socket | None = None
        self._peers_r = self._peers_w = -1
        self._partial = b""
        self._proc: subprocess.Popen[bytes] | None = None
        self._watch: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen on host:port (SO_REUSEPORT, as the gRPC server does) and start the relay process;
        returns the bound port."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host or "0.0.0.0", port))
            sock.listen(1024)
        except OSError:
            sock.close()
            raise
        self._listener = sock
        self._peers_r, self._peers_w = os.pipe()
        os.set_blocking(self._peers_r, False)
        self._spawn()
        self._watch = asyncio.get_running_loop().create_task(self._watch_loop())
        return int(sock.getsockname()[1])

    def _spawn(self) -> None:
        assert self._listener is not None
        fd = self._listener.fileno()
        args = [sys.executable, "-m", "proxy.tls_relay", str(fd), str(self._peers_w), str(self.plain_port),
                str(self.tls_port), str(self.first_byte_timeout)]
        self._proc = subprocess.Popen(args, pass_fds=(fd, self._peers_w))

    async def _watch_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._drain()  # the map is kept current even while no call asks for it
            if self._proc is not None and self._proc.poll() is not None:
                log.error("TLS relay process exited (%s); starting it again", self._proc.returncode)
                self.peers.clear()
                self._spawn()

    def client_of(self, host: str, port: int) -> tuple[str, int]:
        """The client behind a connection the gRPC server sees from (host, port); itself if not relayed."""
        if host != LOOPBACK:
            return (host, port)
        self._drain()
        return self.peers.get(port, (host, port))

    def _drain(self) -> None:
        """Apply what the relay has written: ``+<local port> <host> <port>`` / ``-<local port>`` lines."""
        if self._peers_r < 0:
            return
        data = self._partial
        try:
            while chunk := os.read(self._peers_r, 65536):
                data += chunk
        except BlockingIOError:
            pass
        done, _, self._partial = data.rpartition(b"\n")
        for line in done.split(b"\n") if done else ():
            fields = line.decode().split()
            if line.startswith(b"+") and len(fields) == 3:
                self.peers[int(fields[0][1:])] = (fields[1], int(fields[2]))
            elif line.startswith(b"-"):
                self.peers.pop(int(line[1:]), None)

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if self._proc is not None:
            self._proc.terminate()
            deadline = time.monotonic() + 5
            while self._proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            if self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for fd in (self._peers_r, self._peers_w):
            if fd >= 0:
                os.close(fd)
        self._peers_r = self._peers_w = -1


# -- the relay process ---------------------------------------------------------------------------------


class _Link:
    """One direction of a relayed connection: src socket -> pipe -> dst socket."""

    __slots__ = ("src", "dst", "pr", "pw", "buffered")

    def __init__(self, src: socket.socket, dst: socket.socket) -> None:
        self.src, self.dst = src, dst
        self.pr, self.pw = os.pipe()
        self.buffered = 0  # bytes in the pipe not yet written to dst

    def fill(self) -> bool:
        """src is readable: move what it has into the pipe and on; False at its end."""
        try:
            n = os.splice(self.src.fileno(), self.pw, _CHUNK, flags=_SPLICE)
        except BlockingIOError:
            return True
        if n == 0:
            return False
        self.buffered += n
        self.flush()
        return True

    def flush(self) -> None:
        """Write what the pipe holds to dst, as far as dst takes it."""
        while self.buffered:
            try:
                self.buffered -= os.splice(self.pr, self.dst.fileno(), self.buffered, flags=_SPLICE)
            except BlockingIOError:
                return

    def close(self) -> None:
        os.close(self.pr)
        os.close(self.pw)


class _Pair:
    """A client's connection and the relay's connection to the gRPC server for it."""

    __slots__ = ("client", "server", "up", "down", "local_port", "closed")

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client, self.server = client, server
        self.up, self.down = _Link(client, server), _Link(server, client)
        self.local_port = int(server.getsockname()[1])
        self.closed = False


class _Waiting:
    """An accepted connection whose first byte has not come yet."""

    __slots__ = ("sock", "peer", "deadline")

    def __init__(self, sock: socket.socket, peer: tuple[str, int], deadline: float) -> None:
        self.sock, self.peer, self.deadline = sock, peer, deadline


class Relay:
    def __init__(self, listener: socket.socket, peers_fd: int, plain_port: int, tls_port: int,
                 first_byte_timeout: float) -> None:
        self.listener = listener
        self.peers_fd = peers_fd
        self.ports = (plain_port, tls_port)
        self.first_byte_timeout = first_byte_timeout
        self.sel = selectors.DefaultSelector()
        self.waiting: set[_Waiting] = set()
        listener.setblocking(False)
        self.sel.register(listener, selectors.EVENT_READ, None)

    def run(self) -> None:
        parent = os.getppid()
        next_check = time.monotonic() + 1.0
        while True:
            for key, mask in self.sel.select(1.0):
                obj = key.data
                try:
                    if obj is None:
                        self._accept()
                    elif isinstance(obj, _Waiting):
                        self._detect(obj)
                    else:
                        self._ready(obj[0], obj[1], mask)
                except Exception as e:  # noqa: BLE001 - one connection's trouble must not end the others
                    print(f"tls_relay: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
                    if isinstance(obj, tuple) and not obj[0].closed:
                        self._close(obj[0])
            now = time.monotonic()
            if now >= next_check:
                next_check = now + 1.0
                if os.getppid() != parent:
                    return  # the proxy is gone
                for w in [w for w in self.waiting if w.deadline <= now]:
                    self._drop(w)

    def _accept(self) -> None:
        while True:
            try:
                sock, addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. out of file descriptors: try again on the next readiness
                return
            sock.setblocking(False)
            host = str(addr[0])
            if host.startswith("::ffff:") and "." in host:  # an IPv4 client of a dual-stack listener
                host = host[7:]
            w = _Waiting(sock, (host, int(addr[1])), time.monotonic() + self.first_byte_timeout)
            self.waiting.add(w)
            self.sel.register(sock, selectors.EVENT_READ, w)

    def _drop(self, w: _Waiting) -> None:
        self.waiting.discard(w)
        self.sel.unregister(w.sock)
        w.sock.close()

    def _detect(self, w: _Waiting) -> None:
        try:
            first = w.sock.recv(1, socket.MSG_PEEK)  # left in the socket: the relay sends it on
        except BlockingIOError:
            return
        except OSError:
            first = b""
        if not first:
            self._drop(w)
            return
        port = self.ports[1] if first[0] == TLS_RECORD_HANDSHAKE else self.ports[0]
        try:
            server = socket.create_connection((LOOPBACK, port), timeout=5)
        except OSError as e:
            print(f"tls_relay: cannot reach the gRPC server on port {port}: {e}", file=sys.stderr, flush=True)
            self._drop(w)
            return
        self.waiting.discard(w)
        self.sel.unregister(w.sock)
        server.setblocking(False)
        for s in (w.sock, server):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pair = _Pair(w.sock, server)
        self._tell(f"+{pair.local_port} {w.peer[0]} {w.peer[1]}\n")  # before any byte reaches the server
        self.sel.register(w.sock, selectors.EVENT_READ, (pair, w.sock))
        self.sel.register(server, selectors.EVENT_READ, (pair, server))

    def _ready(self, pair: _Pair, sock: socket.socket, mask: int) -> None:
        if pair.closed:  # closed by the other socket's event of the same select() round
            return
        out, into = (pair.up, pair.down) if sock is pair.client else (pair.down, pair.up)
        try:
            if mask & selectors.EVENT_WRITE:
                into.flush()
            if mask & selectors.EVENT_READ and not out.fill():
                self._close(pair)
                return
        except OSError:  # reset by either side
            self._close(pair)
            return
        for s, o, i in ((pair.client, pair.up, pair.down), (pair.server, pair.down, pair.up)):
            # read from a socket while its outgoing pipe is empty; wait to write while its incoming one is
            # not; neither (its peer is not taking what it sent, and nothing comes back): not watched
            want = (0 if o.buffered else selectors.EVENT_READ) | (selectors.EVENT_WRITE if i.buffered else 0)
            key = self.sel.get_map().get(s)
            if not want:
                if key is not None:
                    self.sel.unregister(s)
            elif key is None:
                self.sel.register(s, want, (pair, s))
            elif key.events != want:
                self.sel.modify(s, want, (pair, s))

    def _close(self, pair: _Pair) -> None:
        pair.closed = True
        registered = self.sel.get_map()
        for s in (pair.client, pair.server):
            if s in registered:
                self.sel.unregister(s)
            s.close()
        pair.up.close()
        pair.down.close()
        self._tell(f"-{pair.local_port}\n")

    def _tell(self, line: str) -> None:
        try:
            os.write(self.peers_fd, line.encode())
        except BlockingIOError:  # the proxy is not reading: its map misses this connection
            pass


def _die_with_parent() -> None:
    """SIGTERM when the proxy process ends, however it ends (a relay left behind would keep accepting on
    the port, with SO_REUSEPORT, for a restarted proxy)."""
    parent = os.getppid()
    if sys.platform == "linux":
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent or parent == 1:
        sys.exit(0)


def main(argv: list[str] | None = None) -> None:
    """``python -m proxy.tls_relay LISTEN_FD PEERS_FD PLAIN_PORT TLS_PORT FIRST_BYTE_TIMEOUT``, started by
    ProtocolDetector with the listening socket and the write end of the peers pipe."""
    args = sys.argv[1:] if argv is None else argv
    listen_fd, peers_fd, plain, tls = (int(a) for a in args[:4])
    _die_with_parent()
    os.set_blocking(peers_fd, False)
    listener = socket.socket(fileno=listen_fd)
    try:
        Relay(listener, peers_fd, plain, tls, float(args[4])).run()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    main()
