"""C2SP tlog-checkpoint bodies: exact round-trips, strict parsing, signing, timestamps."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proveniq.errors import FormatError, SignatureError, VerificationError
from proveniq.log.checkpoint import (
    MAX_SIZE,
    Checkpoint,
    open_checkpoint,
    read_timestamp,
    sign_checkpoint,
    with_timestamp,
)
from proveniq.log.note import NoteVerifier, format_note, parse_note, sign_note
from proveniq.log.signer import Ed25519Signer

ORIGIN = "ledger.proveniq.example/log"
ROOT = bytes(range(32))
ROOT_B64 = base64.b64encode(ROOT).decode()

# c2sp.org/tlog-checkpoint, opening example (verbatim; its key is not published).
SPEC_CHECKPOINT = (
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    "\n"
    "\u2014 example.com/behind-the-sofa "
    "Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
)

LOG = Ed25519Signer.from_seed(name=ORIGIN, seed=bytes(32))
LOG_NEXT = Ed25519Signer.from_seed(name=ORIGIN, seed=bytes([1] * 32))


def verifier(signer: Ed25519Signer) -> NoteVerifier:
    return NoteVerifier.from_public_key(name=signer.name, public_key=signer.public_key)


def test_body_format() -> None:
    cp = Checkpoint(origin=ORIGIN, size=5, root_hash=ROOT, extensions=("a", "b c"))
    assert cp.to_body() == f"{ORIGIN}\n5\n{ROOT_B64}\na\nb c\n"
    assert Checkpoint.from_body(cp.to_body()) == cp


def test_spec_example_parses_and_round_trips() -> None:
    note = parse_note(SPEC_CHECKPOINT)
    cp = Checkpoint.from_body(note.body)
    assert cp.origin == "example.com/behind-the-sofa"
    assert cp.size == 20852163
    assert cp.root_hash == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert cp.extensions == ()
    assert cp.to_body() == note.body
    assert format_note(note) == SPEC_CHECKPOINT


def test_empty_tree() -> None:
    cp = Checkpoint.from_body(f"{ORIGIN}\n0\n{ROOT_B64}\n")
    assert cp.size == 0


_origins = st.text(st.characters(min_codepoint=0x20, exclude_categories=("Cs",)), min_size=1)
_checkpoints = st.builds(
    Checkpoint,
    origin=_origins,
    size=st.integers(min_value=0, max_value=MAX_SIZE),
    root_hash=st.binary(min_size=32, max_size=32),
    extensions=st.lists(_origins, max_size=4).map(tuple),
)


@given(cp=_checkpoints)
def test_body_round_trips_exactly(cp: Checkpoint) -> None:
    body = cp.to_body()
    parsed = Checkpoint.from_body(body)
    assert parsed == cp
    assert parsed.to_body() == body


@given(cp=_checkpoints)
def test_signed_checkpoint_round_trips(cp: Checkpoint) -> None:
    text = sign_checkpoint(cp, [LOG])
    opened, note = open_checkpoint(text, [verifier(LOG)])
    assert opened == cp
    assert note.body == cp.to_body()
    assert format_note(parse_note(text)) == text


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(f"{ORIGIN}\n5\n{ROOT_B64}", id="no-final-newline"),
        pytest.param(f"{ORIGIN}\n5\n", id="no-root"),
        pytest.param("", id="empty"),
        pytest.param(f"\n5\n{ROOT_B64}\n", id="empty-origin"),
        pytest.param(f"{ORIGIN}\n\n{ROOT_B64}\n", id="empty-size"),
        pytest.param(f"{ORIGIN}\n05\n{ROOT_B64}\n", id="leading-zero"),
        pytest.param(f"{ORIGIN}\n00\n{ROOT_B64}\n", id="double-zero"),
        pytest.param(f"{ORIGIN}\n+5\n{ROOT_B64}\n", id="plus-sign"),
        pytest.param(f"{ORIGIN}\n-5\n{ROOT_B64}\n", id="negative"),
        pytest.param(f"{ORIGIN}\n 5\n{ROOT_B64}\n", id="space"),
        pytest.param(f"{ORIGIN}\n5.0\n{ROOT_B64}\n", id="decimal-point"),
        pytest.param(f"{ORIGIN}\n1_000\n{ROOT_B64}\n", id="underscore"),
        pytest.param(f"{ORIGIN}\n\u0665\n{ROOT_B64}\n", id="arabic-digit"),
        pytest.param(f"{ORIGIN}\n{2**64}\n{ROOT_B64}\n", id="size-over-uint64"),
        pytest.param(f"{ORIGIN}\n5\n{base64.b64encode(bytes(31)).decode()}\n", id="root-31"),
        pytest.param(f"{ORIGIN}\n5\n{base64.b64encode(bytes(33)).decode()}\n", id="root-33"),
        pytest.param(f"{ORIGIN}\n5\n{ROOT_B64.rstrip('=')}\n", id="root-no-padding"),
        pytest.param(f"{ORIGIN}\n5\n{ROOT_B64[:-2]}9=\n", id="root-non-canonical"),
        pytest.param(f"{ORIGIN}\n5\n{ROOT.hex()}\n", id="root-hex"),
        pytest.param(f"{ORIGIN}\n5\n{ROOT_B64}\n\n", id="empty-extension"),
        pytest.param(f"{ORIGIN}\r\n5\n{ROOT_B64}\n", id="carriage-return"),
    ],
)
def test_malformed_bodies_are_refused(body: str) -> None:
    with pytest.raises(FormatError):
        Checkpoint.from_body(body)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"origin": ""}, "origin"),
        ({"origin": "a\nb"}, "origin"),
        ({"size": -1}, "size"),
        ({"size": 2**64}, "size"),
        ({"size": True}, "size"),
        ({"root_hash": bytes(31)}, "root_hash"),
        ({"extensions": ("",)}, "extension"),
        ({"extensions": ("x\ny",)}, "extension"),
    ],
)
def test_invalid_values_are_refused(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"origin": ORIGIN, "size": 1, "root_hash": ROOT, **kwargs}
    with pytest.raises(FormatError) as info:
        Checkpoint(**args)  # type: ignore[arg-type]
    assert info.value.field == field


def test_key_rotation_either_key_opens() -> None:
    cp = Checkpoint(origin=ORIGIN, size=42, root_hash=ROOT)
    text = sign_checkpoint(cp, [LOG, LOG_NEXT])
    for v in [verifier(LOG), verifier(LOG_NEXT)]:
        opened = open_checkpoint(text, [v], origin=ORIGIN)
        assert opened.checkpoint == cp
        assert opened.note.verified == (
            next(s for s in opened.note.signatures if s.key_id == v.key_id),
        )


def test_origin_mismatch_is_refused() -> None:
    text = sign_checkpoint(Checkpoint(origin=ORIGIN, size=1, root_hash=ROOT), [LOG])
    with pytest.raises(VerificationError) as info:
        open_checkpoint(text, [verifier(LOG)], origin="other.example/log")
    assert info.value.found == ORIGIN


def test_tampered_checkpoint_is_refused() -> None:
    text = sign_checkpoint(Checkpoint(origin=ORIGIN, size=41, root_hash=ROOT), [LOG])
    with pytest.raises(SignatureError):
        open_checkpoint(text.replace("\n41\n", "\n42\n"), [verifier(LOG)])
    with pytest.raises(SignatureError):
        open_checkpoint(text, [verifier(Ed25519Signer.generate(name=ORIGIN))])


def test_signed_note_with_malformed_body_is_a_format_error() -> None:
    text = sign_note(f"{ORIGIN}\n07\n{ROOT_B64}\n", [LOG])
    with pytest.raises(FormatError, match="leading zeros"):
        open_checkpoint(text, [verifier(LOG)])


def test_timestamp_extension() -> None:
    cp = Checkpoint(origin=ORIGIN, size=3, root_hash=ROOT, extensions=("other",))
    assert read_timestamp(cp) is None
    stamped = with_timestamp(cp, 1_700_000_000_123)
    assert stamped.extensions == ("timestamp 1700000000123", "other")
    assert read_timestamp(stamped) == 1_700_000_000_123
    restamped = with_timestamp(stamped, 1_700_000_000_999)
    assert restamped.extensions == ("timestamp 1700000000999", "other")
    text = sign_checkpoint(restamped, [LOG])
    assert "\ntimestamp 1700000000999\nother\n\n" in text
    assert read_timestamp(open_checkpoint(text, [verifier(LOG)]).checkpoint) == 1_700_000_000_999


@pytest.mark.parametrize(
    "extensions",
    [("timestamp abc",), ("timestamp 01",), ("timestamp -1",), ("timestamp 1", "timestamp 2")],
)
def test_malformed_timestamps_are_refused(extensions: tuple[str, ...]) -> None:
    cp = Checkpoint(origin=ORIGIN, size=3, root_hash=ROOT, extensions=extensions)
    with pytest.raises(FormatError):
        read_timestamp(cp)


def test_negative_timestamp_cannot_be_written() -> None:
    with pytest.raises(FormatError):
        with_timestamp(Checkpoint(origin=ORIGIN, size=3, root_hash=ROOT), -1)
