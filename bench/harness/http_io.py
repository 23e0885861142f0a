"""Minimal HTTP/1.1 on raw sockets, shared by the runtime API emulator, the counting proxy and
the external-service stub.

Why not http.server: it writes headers and body in two send() calls; with Nagle's algorithm on
the sender and delayed ACK on the receiver that costs ~40 ms per exchange, which would swamp a
10 ms cold start. Here every message goes out in one sendall() on a TCP_NODELAY socket.
"""

import socket
import threading

MAX_HEADER_BYTES = 64 * 1024


class Message:
    """One parsed request or response: start line, lower-cased headers, body bytes."""

    def __init__(self, start, headers, body):
        self.start = start
        self.headers = headers
        self.body = body

    @property
    def method(self):
        return self.start.split(" ", 2)[0]

    @property
    def target(self):
        return self.start.split(" ", 2)[1]

    @property
    def status(self):
        return int(self.start.split(" ", 2)[1])


class Reader:
    """Reads HTTP/1.1 messages off one socket (keep-alive: many messages per connection)."""

    def __init__(self, sock):
        self.sock = sock
        self.buffer = b""

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("peer closed the connection")
        self.buffer += chunk

    def _line_block(self):
        while b"\r\n\r\n" not in self.buffer:
            if len(self.buffer) > MAX_HEADER_BYTES:
                raise ConnectionError("header block too large")
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        return head.decode("latin-1")

    def _exactly(self, n):
        while len(self.buffer) < n:
            self._fill()
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def _line(self):
        while b"\r\n" not in self.buffer:
            self._fill()
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def read(self, response_to_head=False):
        head = self._line_block()
        lines = head.split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if response_to_head:
            return Message(lines[0], headers, b"")
        if headers.get("expect", "").lower() == "100-continue":
            # A request whose sender waits to be told to send its body (S3 PutObject clients).
            self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():  # trailers, then the empty line
                        pass
                    break
                body += self._exactly(size)
                self._line()
        else:
            body = self._exactly(int(headers.get("content-length", "0")))
        return Message(lines[0], headers, body)


def encode(start, headers, body=b""):
    """One message as bytes: start line, headers (Content-Length added), body."""
    lines = [start]
    for name, value in headers.items():
        lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 404: "Not Found", 503: "Service Unavailable"}


def respond(sock, status, body=b"", headers=None):
    head = {"Content-Type": "application/json"}
    head.update(headers or {})
    sock.sendall(encode(f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}", head, body))


def connect(host, port, timeout=30):
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class Server:
    """A threaded loopback server: `handle(message, sock)` answers each request of each
    connection; `on_connect(sock)`, if given, sees each connection first. Daemon threads, so a
    stuck peer never keeps the harness alive."""

    def __init__(self, handle, port=0, on_connect=None):
        self.handle = handle
        self.on_connect = on_connect
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(256)
        self.port = self.listener.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.on_connect:
                self.on_connect(sock)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock):
        reader = Reader(sock)
        try:
            while not self.closed:
                self.handle(reader.read(), sock)
        except (ConnectionError, OSError):
            pass
        finally:
            sock.close()

    def close(self):
        self.closed = True
        self.listener.close()


class Client:
    """A keep-alive HTTP/1.1 client for one host (one connection; reconnects when closed)."""

    def __init__(self, host, port, timeout=30):
        self.host, self.port, self.timeout = host, port, timeout
        self.sock = None
        self.reader = None

    def request(self, method, path, body=b"", headers=None):
        head = {"Host": f"{self.host}:{self.port}"}
        head.update(headers or {})
        data = encode(f"{method} {path} HTTP/1.1", head, body)
        # A reused keep-alive connection may have been closed by the server while idle: then
        # (and only then) the request is sent once more on a fresh connection.
        reused = self.sock is not None
        for fresh in (False, True):
            if self.sock is None:
                self.sock = connect(self.host, self.port, self.timeout)
                self.reader = Reader(self.sock)
            try:
                self.sock.sendall(data)
                answer = self.reader.read(response_to_head=(method == "HEAD"))
                while 100 <= answer.status < 200:  # interim answers (100 Continue): the final one follows
                    answer = self.reader.read(response_to_head=(method == "HEAD"))
                if answer.headers.get("connection", "").lower() == "close":
                    self.close()
                return answer
            except (ConnectionError, OSError):
                self.close()
                if fresh or not reused:
                    raise
        raise ConnectionError("unreachable")

    def close(self):
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        self.reader = None
