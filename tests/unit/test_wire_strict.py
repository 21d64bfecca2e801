"""The response parser against h11, on generated and mangled responses split at random points.

Every input is parsed by both.  When both accept, status, headers, body,
keep-alive and "complete before EOF" must be equal.  When h11 refuses, so
must the parser.  When only the parser refuses, its message must name one of
its four documented extra refusals (see ``rayfine_core.transport.wire``) and that
condition must really hold in what h11 read.
"""

from __future__ import annotations

import string
import sys
from dataclasses import dataclass, field
from typing import Optional
from unittest import mock

import h11
import h11._events
import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from rayfine_core.transport.wire import MAX_HEAD_BYTES, ProtocolError, ResponseParser


@dataclass
class Outcome:
    error: Optional[str] = None
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    keep_alive: bool = False
    before_eof: bool = False


@dataclass
class H11Reading:
    outcome: Outcome
    fields: list[list[tuple[bytes, bytes]]]  # every head's and trailer's lines, as read
    versions: list[bytes]


def ours(pieces: list[bytes]) -> Outcome:
    parser = ResponseParser()
    try:
        for piece in pieces:
            parser.feed(piece)
        before_eof = parser.complete
        if not before_eof:
            parser.feed_eof()
    except ProtocolError as exc:
        return Outcome(error=str(exc))
    response = parser.response
    return Outcome(
        None,
        response.status_code,
        response.headers,
        response.content,
        parser.keep_alive,
        before_eof,
    )


def reference(pieces: list[bytes]) -> H11Reading:
    """h11 as a client that sent one GET, with no cap on the head's size."""
    fields: list[list[tuple[bytes, bytes]]] = []
    versions: list[bytes] = []
    original = h11._events.normalize_and_validate

    def recording(headers, _parsed=False):  # the lines as read, before h11 merges repeats
        fields.append([(bytes(name), bytes(value)) for name, value in headers])
        return original(headers, _parsed=_parsed)

    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=sys.maxsize)
    conn.send(h11.Request(method="GET", target="/health", headers=[("host", "rayfine")]))
    conn.send(h11.EndOfMessage())
    response: Optional[h11.Response] = None
    body: list[bytes] = []
    done = False

    def drain() -> None:
        nonlocal response, done
        while not done:
            event = conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED or type(event) is h11.ConnectionClosed:
                return
            if isinstance(event, (h11.InformationalResponse, h11.Response)):
                versions.append(event.http_version)
            if type(event) is h11.Response:
                response = event
            elif type(event) is h11.Data:
                body.append(bytes(event.data))
            elif type(event) is h11.EndOfMessage:
                done = True

    with mock.patch.object(h11._events, "normalize_and_validate", recording):
        try:
            for piece in pieces:
                conn.receive_data(piece)
                drain()
            before_eof = done
            if not done:
                conn.receive_data(b"")
                drain()
        except h11.RemoteProtocolError as exc:
            return H11Reading(Outcome(error=str(exc)), fields, versions)
    if not done or response is None:
        return H11Reading(Outcome(error="incomplete"), fields, versions)
    headers: dict[str, str] = {}
    for raw_name, value in response.headers.raw_items():
        name = raw_name.decode().lower()
        text = value.decode("latin-1")
        headers[name] = headers[name] + ", " + text if name in headers else text
    keep_alive = (
        before_eof
        and conn.their_state is h11.DONE
        and conn.our_state is h11.DONE
        and not conn.trailing_data[0]
    )
    outcome = Outcome(None, response.status_code, headers, b"".join(body), keep_alive, before_eof)
    return H11Reading(outcome, fields, versions)


def extra_refusal_holds(message: str, raw: bytes, seen: H11Reading) -> bool:
    """Whether the parser's refusal is one of its documented extras, and really applies."""
    names = [[name.lower() for name, _ in lines] for lines in seen.fields]
    if "both transfer-encoding and content-length" in message:
        return any(b"transfer-encoding" in n and b"content-length" in n for n in names)
    if "repeated content-length" in message:
        return any(n.count(b"content-length") > 1 for n in names)
    if message.startswith("bad content-length"):  # h11 reads "5, 5" as 5
        return any(
            b"," in v for lines in seen.fields for k, v in lines if k.lower() == b"content-length"
        )
    if message.startswith("not an HTTP/1.x status line"):
        return any(not version.startswith(b"1.") for version in seen.versions)
    if "too large" in message or "too long" in message:
        return len(raw) > MAX_HEAD_BYTES
    return False


def note(kind: str) -> None:
    if currently_in_test_context():  # shown by pytest --hypothesis-show-statistics
        event(kind)


def check(raw: bytes, cuts: list[int]) -> Outcome:
    """Parse ``raw`` cut at ``cuts`` with both parsers, assert they agree; return ours."""
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(raw)}), len(raw)]
    pieces = [raw[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]
    got, seen = ours(pieces), reference(pieces)
    want = seen.outcome
    if want.error is not None:
        note("both refuse")
        assert got.error is not None, f"h11 refused ({want.error}), the parser accepted {got}"
    elif got.error is not None:
        note(f"only the parser refuses: {got.error[:30]}")
        assert extra_refusal_holds(got.error, raw, seen), (
            f"the parser refused ({got.error}) what h11 accepted: {want}"
        )
    else:
        note(f"both accept, {'chunked' if 'transfer-encoding' in got.headers else 'other'}")
        coding = got.headers.get("transfer-encoding")
        if coding is not None:  # h11 lower-cases this one value
            got.headers["transfer-encoding"] = coding.lower()
        assert got == want
    return got


# -- the corpus ------------------------------------------------------------------------------


def mostly(good, *bad, one_in: int = 12):
    """Usually ``good``; one time in ``one_in``, one of ``bad`` (so most inputs stay valid)."""
    return st.integers(0, one_in - 1).flatmap(lambda i: good if i else st.one_of(*bad))


TCHAR = string.ascii_letters + string.digits + "-!#$%&'*+.^_`|~"
PRINTABLE = (
    string.printable.replace("\r", "").replace("\n", "").replace("\x0b", "").replace("\x0c", "")
)
names = mostly(
    st.text(TCHAR, min_size=1, max_size=10).map(str.encode),
    st.sampled_from([b"", b"bad name", b"x\x00y", b" lead", b"\xffx", b"x\t", b"x(y)"]),
)
values = mostly(
    st.text(PRINTABLE, max_size=16).map(str.encode),
    st.binary(max_size=12),
    st.sampled_from([b"", b"  padded\t", b"a\x00b", b"a\x0bb", b"\x80\xff", b"a \t b"]),
)
crlf = st.just(b"\r\n")
line_ends = mostly(
    crlf,
    st.just(b"\n"),
    mostly(st.just(b"\n"), st.sampled_from([b"\r", b"\r\r\n", b" \r\n"]), one_in=3),
    one_in=15,
)
LENGTHS = [
    b"0",
    b"12",
    b"-1",
    b"1_0",
    b"+5",
    b"0x5",
    b"007",
    b"5, 5",
    b"5,6",
    b"\xd9\xa1",
    b"1" * 21,
]
CODINGS = [
    b"chunked",
    b"Chunked",
    b"CHUNKED  ",
    b"gzip",
    b"gzip, chunked",
    b"chunked, chunked",
    b"",
]
framing_fields = st.one_of(
    st.tuples(st.just(b"Content-Length"), st.sampled_from(LENGTHS)),
    st.tuples(st.just(b"transfer-encoding"), st.sampled_from(CODINGS)),
    st.tuples(
        st.just(b"connection"),
        st.sampled_from([b"close", b"keep-alive", b"Close", b"closed", b"upgrade, close"]),
    ),
)
STATUS_LINES = [
    b"HTTP/1.1 200 OK",
    b"HTTP/1.1 200",
    b"HTTP/1.1 200 ",
    b"HTTP/1.0 200 OK",
    b"HTTP/1.1 204 No Content",
    b"HTTP/1.1 304 Not Modified",
    b"HTTP/1.1 404 Not Found",
    b"HTTP/1.1 500 \x80 odd\treason",
    b"HTTP/1.1 999 X",
    b"HTTP/2.0 200 OK",
    b"HTTP/1.2 200 OK",
    b"HTTP/1.1 099 X",
    b"HTTP/1.1 20 OK",
    b"HTTP/1.1 2000 OK",
    b"HTTP/1.1  200 OK",
    b"HTTP/11 200 OK",
    b"http/1.1 200 OK",
    b"ICY 200 OK",
    b"HTTP/1.1 200 O\x00K",
]
INTERIM_LINES = [b"HTTP/1.1 100 Continue", b"HTTP/1.1 103 Early Hints", b"HTTP/1.1 101 Switching"]


@st.composite
def field_block(draw, framing: list[tuple[bytes, bytes]]) -> bytes:
    lines = draw(st.lists(st.tuples(names, values), max_size=4)) + framing
    lines = draw(st.permutations(lines))
    out = b""
    for name, value in lines:
        out += name + b":" + draw(st.sampled_from([b" ", b"", b"\t "])) + value + draw(line_ends)
        if draw(st.integers(0, 14)) == 0:  # obs-fold
            out += draw(st.sampled_from([b" ", b"\t", b"  "])) + draw(values) + draw(line_ends)
    if draw(st.integers(0, 40)) == 0:  # a head near or over the cap
        size = draw(st.sampled_from([MAX_HEAD_BYTES - 300, MAX_HEAD_BYTES + 10]))
        out += b"x-big: " + b"a" * size + b"\r\n"
    return out + draw(mostly(crlf, st.sampled_from([b"\n", b"\r\r\n", b""])))


@st.composite
def chunked_body(draw) -> bytes:
    out = b""
    for data in draw(st.lists(st.binary(min_size=1, max_size=24), max_size=4)):
        size = b"%x" % len(data)
        size = draw(
            mostly(
                st.sampled_from([size, size.upper(), b"00" + size]),
                st.sampled_from([b"zz", b"-1", b"0x" + size, b"%x" % (len(data) + 1)]),
                one_in=6,
            )
        )
        ext = draw(
            mostly(
                st.sampled_from([b"", b"", b";a=b", b";x", b'; q="v v"', b" ", b"\t"]),
                st.sampled_from([b";\x00", b" ;x", b";\n"]),
            )
        )
        end = draw(
            mostly(crlf, st.sampled_from([b"XY", b"\n\r", b"\r\r", b"\n\n", b"\n", b""]), one_in=5)
        )
        out += size + ext + draw(mostly(crlf, st.just(b"\n"))) + data + end
    out += draw(st.sampled_from([b"0", b"000", b"0;last"])) + b"\r\n"
    trailers = draw(st.lists(st.tuples(names, values), max_size=2))
    out += b"".join(name + b": " + value + draw(line_ends) for name, value in trailers)
    return out + draw(mostly(crlf, st.sampled_from([b"\n", b""])))


@st.composite
def responses(draw) -> bytes:
    raw = b""
    for _ in range(draw(st.integers(0, 2)) if draw(st.booleans()) else 0):
        raw += draw(st.sampled_from(INTERIM_LINES)) + b"\r\n" + draw(field_block([]))
    mode = draw(st.sampled_from(["length", "chunked", "close", "mixed", "odd length"]))
    body = draw(st.binary(max_size=40))
    framing: list[tuple[bytes, bytes]] = []
    if mode == "length":
        framing = [(b"content-length", b"%d" % len(body))]
        body += draw(mostly(st.just(b""), st.just(b"extra"), one_in=4))
    elif mode == "odd length":
        framing = [(b"content-length", draw(st.sampled_from(LENGTHS)))]
    elif mode == "chunked":
        framing = [(b"transfer-encoding", b"chunked")]
        body = draw(chunked_body())
    elif mode == "mixed":
        framing = draw(st.lists(framing_fields, min_size=1, max_size=3))
        body = draw(st.one_of(st.just(body), chunked_body()))
    if draw(st.integers(0, 3)) == 0:
        framing.append(draw(framing_fields.filter(lambda f: f[0] == b"connection")))
    status = draw(
        mostly(st.sampled_from(STATUS_LINES[:8]), st.sampled_from(STATUS_LINES), one_in=5)
    )
    return raw + status + draw(line_ends) + draw(field_block(framing)) + body


def cuts_for(raw: bytes):
    return st.lists(st.integers(0, len(raw)), max_size=8)


@st.composite
def mangled(draw) -> bytes:
    raw = bytearray(draw(responses()))
    for _ in range(draw(st.integers(1, 2))):
        at = draw(st.integers(0, len(raw)))
        edit = draw(st.sampled_from(["insert", "delete", "replace"]))
        byte = draw(st.sampled_from([b"\r", b"\n", b" ", b":", b"\x00", b"0", b"a", b";", b","]))
        if edit == "insert":
            raw[at:at] = byte
        elif at < len(raw):
            raw[at : at + 1] = byte if edit == "replace" else b""
    return bytes(raw)


SETTINGS = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.data())
def test_generated_responses_agree_with_h11(data):
    raw = data.draw(responses())
    check(raw, data.draw(cuts_for(raw)))


@SETTINGS
@given(st.data())
def test_mangled_responses_agree_with_h11(data):
    raw = data.draw(mangled())
    check(raw, data.draw(cuts_for(raw)))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=60), st.lists(st.integers(0, 80), max_size=4))
def test_arbitrary_bytes_after_a_status_line_agree_with_h11(tail, cuts):
    check(b"HTTP/1.1 200 OK\r\n" + tail, cuts)


# -- the cases the parser used to get wrong, and the rules it adds, one by one -----------------

OK_HEAD = b"HTTP/1.1 200 OK\r\n"
EVERY_CUT = "every_cut"


def each_split(raw: bytes) -> list[Outcome]:
    """The outcome for the whole, for each single cut, and byte by byte (all must agree)."""
    outcomes = [check(raw, [])]
    step = max(1, len(raw) // 200)
    outcomes += [check(raw, [i]) for i in range(1, len(raw), step)]
    outcomes.append(check(raw, list(range(len(raw)))) if len(raw) < 5000 else outcomes[0])
    first = outcomes[0]
    assert all(o == first if first.error is None else o.error is not None for o in outcomes)
    return outcomes


@pytest.mark.parametrize(
    "raw, reason",
    [
        (OK_HEAD + b"content-length: -1\r\n\r\n", "bad content-length"),
        (OK_HEAD + b"content-length: 1_0\r\n\r\n0123456789", "bad content-length"),
        (OK_HEAD + b"content-length: +5\r\n\r\n12345", "bad content-length"),
        (OK_HEAD + b"content-length: \xd9\xa1\r\n\r\nx", "bad content-length"),
        (
            OK_HEAD + b"content-length: 5\r\ncontent-length: 5\r\n\r\n12345",
            "repeated content-length",
        ),
        (
            OK_HEAD + b"content-length: 5\r\ncontent-length: 6\r\n\r\n123456",
            "repeated content-length",
        ),
        (OK_HEAD + b"content-length: 5, 5\r\n\r\n12345", "bad content-length"),
        (OK_HEAD + b"transfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n0\r\n\r\n", "both"),
        (OK_HEAD + b"transfer-encoding: gzip\r\n\r\nxyz", "unsupported transfer-encoding"),
        (OK_HEAD + b"transfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n", "unsupported"),
        (
            OK_HEAD + b"transfer-encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n",
            "not followed by CRLF",
        ),
        (
            OK_HEAD + b"transfer-encoding: chunked\r\n\r\n3\r\nabc\n0\r\n\r\n",
            "not followed by CRLF",
        ),
        (OK_HEAD + b"transfer-encoding: chunked\r\n\r\n" + b"0" * 21 + b"\r\n\r\n", "chunk-size"),
        (b"HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\n\r\n", "unexpected status 101"),
        (b"HTTP/2.0 200 OK\r\ncontent-length: 0\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 20 OK\r\n\r\n", "not an HTTP/1.x status line"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.x status line"),
        (OK_HEAD + b" folded: first\r\ncontent-length: 0\r\n\r\n", "continuation line"),
        (OK_HEAD + b"bad name: x\r\n\r\n", "bad header line"),
    ],
)
def test_refused(raw, reason):
    for outcome in each_split(raw):
        assert outcome.error is not None and reason in outcome.error


def test_interim_responses_are_skipped():
    raw = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n"
        + OK_HEAD
        + b"content-length: 2\r\n\r\nhi"
    )
    for outcome in each_split(raw):
        assert (outcome.status, outcome.body, outcome.keep_alive) == (200, b"hi", True)
        assert "link" not in outcome.headers


def test_chunk_extensions_trailers_bare_lf_and_obs_fold():
    chunked = (
        OK_HEAD
        + b"transfer-encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n1;x \r\n!\r\n0\r\nx-t: 1\r\n\r\n"
    )
    assert each_split(chunked)[0].body == b"hello!"
    bare = b"HTTP/1.1 200 OK\nx-a: 1\r\ncontent-length: 2\n\nhi"
    assert each_split(bare)[0].headers == {"x-a": "1", "content-length": "2"}
    folded = OK_HEAD + b"x-long: one\r\n  two\r\n\tthree\r\ncontent-length: 0\r\n\r\n"
    assert each_split(folded)[0].headers["x-long"] == "one two three"


def test_framing_without_a_body():
    for status in (b"204 No Content", b"304 Not Modified"):
        outcome = each_split(b"HTTP/1.1 " + status + b"\r\ncontent-length: 5\r\n\r\n")[0]
        assert outcome.body == b"" and outcome.keep_alive and outcome.before_eof
    extra = each_split(b"HTTP/1.1 204 No Content\r\n\r\nHELLO")[0]
    assert extra.body == b"" and not extra.keep_alive  # bytes nobody asked for
    old = each_split(b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n")[0]
    assert not old.keep_alive
    until_close = each_split(OK_HEAD + b"\r\nthe rest")[0]
    assert until_close.body == b"the rest" and not until_close.before_eof


@pytest.mark.parametrize("size, accepted", [(MAX_HEAD_BYTES, True), (MAX_HEAD_BYTES + 1, False)])
def test_head_cap_holds_however_the_bytes_arrive(size, accepted):
    head = OK_HEAD + b"content-length: 0\r\nx-big: "
    head += b"a" * (size - len(head) - 4) + b"\r\n\r\n"
    assert len(head) == size
    for outcome in each_split(head):
        assert (outcome.error is None) == accepted, outcome.error


def test_repeated_fields_are_joined():
    outcome = check(
        OK_HEAD + b"set-cookie: a=1\r\nSet-Cookie: b=2\r\ncontent-length: 0\r\n\r\n", []
    )
    assert outcome.headers["set-cookie"] == "a=1, b=2"
