"""A tiny authoritative DNS responder on 127.0.0.1 for discovery tests.

Answers are built with dnspython's message and rrset classes from a zone the test edits while
the responder runs: `zone[(name, "A")] = ["10.0.0.1"]`. Names listed nowhere get NXDOMAIN;
`silent = True` drops every query (the resolver times out); `failing = True` answers SERVFAIL.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


class StubResolver(asyncio.DatagramProtocol):
    """The responder: a zone of (name, type) -> record texts, and counters of what it saw."""

    def __init__(self) -> None:
        self.zone: dict[tuple[str, str], list[str]] = {}
        self.silent = False
        self.failing = False
        self.queries: list[tuple[str, str]] = []
        self.transport: asyncio.BaseTransport | None = None
        self.address = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name, rdtype))
        if self.silent or self.transport is None:
            return
        response = dns.message.make_response(query)
        if self.failing:
            response.set_rcode(dns.rcode.SERVFAIL)
            self.transport.sendto(response.to_wire(), addr)  # type: ignore[attr-defined]
            return
        records = self.zone.get((name, rdtype))
        if records:
            response.answer.append(dns.rrset.from_text(question.name, 30, "IN", rdtype, *records))
        elif not any(known == name for known, _type in self.zone):
            response.set_rcode(dns.rcode.NXDOMAIN)
        # else: the name exists without this type -> NOERROR with an empty answer (NoAnswer)
        self.transport.sendto(response.to_wire(), addr)  # type: ignore[attr-defined]


@contextlib.asynccontextmanager
async def stub_resolver() -> AsyncIterator[StubResolver]:
    """A StubResolver listening on 127.0.0.1 (an ephemeral port), closed on exit."""
    stub = StubResolver()
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: stub, local_addr=("127.0.0.1", 0)
    )
    host, port = transport.get_extra_info("sockname")[:2]
    stub.address = f"{host}:{port}"
    try:
        yield stub
    finally:
        transport.close()
