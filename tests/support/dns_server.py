"""A local DNS server for the tests (dnslib): it answers from the records a test writes, on 127.0.0.1
and a free port, over UDP and TCP; every other name is NXDOMAIN. No lookup reaches the internet."""

import socket
import threading

from dnslib import RCODE, RR
from dnslib.server import BaseResolver, DNSLogger, DNSServer


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        return udp.getsockname()[1]


class ZoneResolver(BaseResolver):
    def __init__(self):
        self.records = []  # [RR]
        self.lock = threading.Lock()

    def resolve(self, request, handler):
        reply = request.reply()
        name, qtype = request.q.qname, request.q.qtype
        with self.lock:
            matching = [rr for rr in self.records if rr.rname == name]
        for rr in matching:
            if rr.rtype == qtype:
                reply.add_answer(rr)
        if not matching:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


class LocalDns:
    """add('example.com. 300 IN TXT "v=spf1 ip4:127.0.0.1 ~all"') with zone file lines; clear()."""

    def __init__(self):
        self.resolver = ZoneResolver()
        self.port = None
        self.servers = []

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        for _ in range(5):  # the free port may be taken between the probe and the bind
            port = free_port()
            try:
                quiet = DNSLogger(logf=lambda text: None)
                udp = DNSServer(self.resolver, address="127.0.0.1", port=port, logger=quiet)
                tcp = DNSServer(self.resolver, address="127.0.0.1", port=port, tcp=True, logger=quiet)
            except OSError:
                continue
            self.port, self.servers = port, [udp, tcp]
            for server in self.servers:
                server.start_thread()
            return self
        raise RuntimeError("no free port for the local DNS server")

    def stop(self):
        for server in self.servers:
            server.stop()
            server.server.server_close()

    def add(self, *zone_lines):
        records = [rr for line in zone_lines for rr in RR.fromZone(line)]
        with self.resolver.lock:
            self.resolver.records += records

    def txt(self, name, text):
        """A TXT record of any length (split into strings of 255 bytes, as DNS wants)."""
        chunks = " ".join('"' + text[i:i + 255] + '"' for i in range(0, len(text), 255))
        self.add(f"{name}. 300 IN TXT {chunks}")

    def clear(self):
        with self.resolver.lock:
            self.resolver.records = []
