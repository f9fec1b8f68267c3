"""C2SP signed notes: published vectors, multi-signature rules, tampering, malformed input."""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proveniq.errors import FormatError, SignatureError, ValidationError
from proveniq.log.note import (
    MAX_SIGNATURES,
    Note,
    NoteSignature,
    NoteVerifier,
    format_note,
    open_note,
    parse_note,
    sign_note,
)
from proveniq.log.signer import Ed25519Signer, note_key_id, verifier_key_string

EM = "\u2014"

# c2sp.org/signed-note, "Verifier keys" > "Example" (verbatim).
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n"
    "\n"
    f"{EM} example.com/foo "
    "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)

# c2sp.org/signed-note, opening example (its public key is not published: parse only).
SPEC_POEM = (
    "Ognuno sta solo sul cuor della terra\n"
    "trafitto da un raggio di sole:\n"
    "\n"
    "ed è subito sera.\n"
    "\n"
    f"{EM} quasimodo.example/salvatore "
    "NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n"
)

# golang.org/x/mod/sumdb/note, example_test.go and note_test.go (verbatim). EnochRoot's key
# comes from GenerateKey with an all-zero reader, i.e. the all-zero seed.
GO_SKEY_DATA = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"  # PRIVATE+KEY+PeterNeumann+c74f20a3+…
GO_PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_PETER_SIG = (
    f"{EM} PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
GO_ENOCH_SIG = (
    f"{EM} EnochRoot "
    "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
)
GO_NOTE = GO_TEXT + "\n" + GO_PETER_SIG + GO_ENOCH_SIG


def verifier(signer: Ed25519Signer) -> NoteVerifier:
    return NoteVerifier.from_public_key(name=signer.name, public_key=signer.public_key)


@pytest.fixture(scope="module")
def alice() -> Ed25519Signer:
    return Ed25519Signer.from_seed(name="log.example/alice", seed=bytes(range(32)))


@pytest.fixture(scope="module")
def bob() -> Ed25519Signer:
    return Ed25519Signer.from_seed(name="witness.example/bob", seed=bytes(range(1, 33)))


# --- published vectors -------------------------------------------------------------------------


def test_spec_example_verifies_and_round_trips() -> None:
    v = NoteVerifier.from_key_string(SPEC_VKEY)
    assert v.name == "example.com/foo"
    assert v.key_id == bytes.fromhex("530d903a")
    assert v.key_string() == SPEC_VKEY
    note = open_note(SPEC_NOTE, [v])
    assert note.body == "This is an example message.\n"
    assert note.verified_by == ("example.com/foo",)
    assert format_note(note) == SPEC_NOTE
    assert open_note(SPEC_NOTE.encode(), [v]).body == note.body


def test_spec_poem_parses_with_blank_lines_in_body() -> None:
    note = parse_note(SPEC_POEM)
    assert note.body.endswith("\n\ned è subito sera.\n")
    assert [s.name for s in note.signatures] == ["quasimodo.example/salvatore"]
    assert format_note(note) == SPEC_POEM
    with pytest.raises(SignatureError, match=re.escape("quasimodo.example/salvatore")):
        open_note(SPEC_POEM, [NoteVerifier.from_key_string(SPEC_VKEY)])


def test_go_signing_vector_reproduced_byte_for_byte() -> None:
    peter = Ed25519Signer.from_seed(name="PeterNeumann", seed=base64.b64decode(GO_SKEY_DATA)[1:])
    enoch = Ed25519Signer.from_seed(name="EnochRoot", seed=bytes(32))
    assert verifier_key_string(peter.name, peter.public_key) == GO_PETER_VKEY
    assert verifier_key_string(enoch.name, enoch.public_key) == GO_ENOCH_VKEY
    assert sign_note(GO_TEXT, [peter]) == GO_TEXT + "\n" + GO_PETER_SIG
    assert sign_note(GO_TEXT, [peter, enoch]) == GO_NOTE


def test_go_doubly_signed_note_opens_with_either_key() -> None:
    peter = NoteVerifier.from_key_string(GO_PETER_VKEY)
    enoch = NoteVerifier.from_key_string(GO_ENOCH_VKEY)
    assert open_note(GO_NOTE, [peter]).verified_by == ("PeterNeumann",)
    assert open_note(GO_NOTE, [enoch]).verified_by == ("EnochRoot",)
    assert open_note(GO_NOTE, [enoch, peter]).verified_by == ("PeterNeumann", "EnochRoot")


# --- multiple signatures (key rotation, cosigning) ---------------------------------------------


def test_each_signer_alone_opens_a_doubly_signed_note(
    alice: Ed25519Signer, bob: Ed25519Signer
) -> None:
    text = sign_note("hello\n", [alice, bob])
    assert open_note(text, [verifier(alice)]).verified_by == (alice.name,)
    assert open_note(text, [verifier(bob)]).verified_by == (bob.name,)
    both = open_note(text, [verifier(alice), verifier(bob)])
    assert [s.name for s in both.verified] == [alice.name, bob.name]
    assert both == parse_note(text)


def test_rotated_key_with_same_name_verifies_through_either_key(alice: Ed25519Signer) -> None:
    new = Ed25519Signer.generate(name=alice.name)
    text = sign_note("rotating\n", [alice, new])
    assert len(open_note(text, [verifier(new)]).verified) == 1
    assert open_note(text, [verifier(alice), verifier(new)]).verified_by == (alice.name,)


def test_unknown_keys_are_ignored(alice: Ed25519Signer, bob: Ed25519Signer) -> None:
    stranger = Ed25519Signer.generate(name="stranger.example")
    text = sign_note("body\n", [stranger, alice])
    assert open_note(text, [verifier(alice), verifier(bob)]).verified_by == (alice.name,)


def test_name_or_key_id_match_alone_is_an_unknown_key(alice: Ed25519Signer) -> None:
    text = sign_note("body\n", [alice])
    other = Ed25519Signer.generate(name="other.example")
    same_id = NoteVerifier(name=other.name, key_id=alice.key_id, public_key=other.public_key)
    same_name = verifier(Ed25519Signer.generate(name=alice.name))
    with pytest.raises(SignatureError, match="no signature from a known key"):
        open_note(text, [same_id, same_name])


def test_bad_signature_from_known_key_refuses_the_note(
    alice: Ed25519Signer, bob: Ed25519Signer
) -> None:
    good = parse_note(sign_note("body\n", [alice, bob]))
    forged = NoteSignature(name=bob.name, key_id=bob.key_id, signature=bytes(64))
    text = format_note(Note(body=good.body, signatures=(good.signatures[0], forged)))
    assert open_note(text, [verifier(alice)]).verified_by == (alice.name,)
    with pytest.raises(SignatureError, match=re.escape(bob.name)) as info:
        open_note(text, [verifier(alice), verifier(bob)])
    assert info.value.what == "note signature"


def test_no_known_signature_names_the_keys_present(
    alice: Ed25519Signer, bob: Ed25519Signer
) -> None:
    text = sign_note("body\n", [alice])
    with pytest.raises(SignatureError) as info:
        open_note(text, [verifier(bob)])
    assert alice.name in info.value.message
    assert bob.name in info.value.message
    with pytest.raises(SignatureError):
        open_note(text, [])


def test_conflicting_verifiers_are_refused(alice: Ed25519Signer) -> None:
    clash = NoteVerifier(name=alice.name, key_id=alice.key_id, public_key=bytes(32))
    with pytest.raises(ValidationError, match="share name and key id"):
        open_note(sign_note("x\n", [alice]), [verifier(alice), clash])


# --- tampering -----------------------------------------------------------------------------------


def test_tampered_body_is_refused(alice: Ed25519Signer) -> None:
    text = sign_note("size 10\n", [alice])
    with pytest.raises(SignatureError):
        open_note(text.replace("size 10", "size 11"), [verifier(alice)])


def test_tampered_signature_is_refused(alice: Ed25519Signer) -> None:
    note = parse_note(sign_note("body\n", [alice]))
    sig = note.signatures[0]
    flipped = bytes([sig.signature[0] ^ 1]) + sig.signature[1:]
    bad = Note(body=note.body, signatures=(NoteSignature(sig.name, sig.key_id, flipped),))
    with pytest.raises(SignatureError, match="does not verify"):
        open_note(format_note(bad), [verifier(alice)])


def test_tampered_key_id_makes_the_signature_unknown(alice: Ed25519Signer) -> None:
    note = parse_note(sign_note("body\n", [alice]))
    sig = note.signatures[0]
    moved = NoteSignature(sig.name, bytes(4), sig.signature)
    with pytest.raises(SignatureError, match="no signature from a known key"):
        open_note(format_note(Note(body=note.body, signatures=(moved,))), [verifier(alice)])


# --- malformed input -----------------------------------------------------------------------------

SIG = SPEC_NOTE.split("\n\n", 1)[1]
BLOB = SIG.split(" ")[2].rstrip("\n")


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("body\n" + SIG, id="no-blank-line"),
        pytest.param("body\n\n" + SIG.rstrip("\n"), id="no-final-newline"),
        pytest.param("body\n\n", id="no-signatures"),
        pytest.param("body\n\n" + SIG + "\n", id="blank-line-after-signatures"),
        pytest.param("\n" + SIG, id="empty-body"),
        pytest.param("body\n\n- example.com/foo " + BLOB + "\n", id="hyphen-not-em-dash"),
        pytest.param(f"body\n\n{EM}example.com/foo {BLOB}\n", id="no-space-after-dash"),
        pytest.param(f"body\n\n{EM} example.com/foo\n", id="no-signature"),
        pytest.param(f"body\n\n{EM}  {BLOB}\n", id="empty-name"),
        pytest.param(f"body\n\n{EM} a+b {BLOB}\n", id="plus-in-name"),
        pytest.param(f"body\n\n{EM} example.com/foo {BLOB} x\n", id="trailing-field"),
        pytest.param(f"body\n\n{EM} example.com/foo {BLOB.rstrip('=')}\n", id="no-padding"),
        pytest.param(f"body\n\n{EM} example.com/foo !{BLOB[1:]}\n", id="bad-base64"),
        pytest.param(f"body\n\n{EM} example.com/foo {BLOB[:-2]}N=\n", id="non-canonical-b64"),
        pytest.param(f"body\n\n{EM} example.com/foo AAAAAA==\n", id="key-id-only"),
        pytest.param("bo\rdy\n\n" + SIG, id="carriage-return"),
        pytest.param("bo\tdy\n\n" + SIG, id="tab"),
        pytest.param("bo\x00dy\n\n" + SIG, id="nul"),
        pytest.param("bo\ud800dy\n\n" + SIG, id="lone-surrogate"),
        pytest.param("body\n\n" + SIG + SIG, id="duplicate-signature"),
        pytest.param(b"bo\xffdy\n\n" + SIG.encode(), id="invalid-utf8"),
    ],
)
def test_malformed_notes_are_refused(text: str | bytes) -> None:
    with pytest.raises(FormatError):
        parse_note(text)
    with pytest.raises(FormatError):
        open_note(text, [NoteVerifier.from_key_string(SPEC_VKEY)])


def test_signature_count_limit(alice: Ed25519Signer) -> None:
    signers = [Ed25519Signer.generate(name=f"w{i}.example") for i in range(16)]
    text = sign_note("cosigned\n", [alice, *signers])
    assert open_note(text, [verifier(signers[-1])]).verified_by == ("w15.example",)
    line = parse_note(text).signatures[0].to_line()
    too_many = "x\n\n" + "".join(
        line.replace(alice.name, f"n{i}") for i in range(MAX_SIGNATURES + 1)
    )
    with pytest.raises(FormatError, match="more than"):
        parse_note(too_many)


@pytest.mark.parametrize(
    "vkey",
    [
        "example.com/foo+530d903a",
        "example.com/foo+530d903b+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        "example.com/bar+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        "example.com/foo+530d903+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        "example.com/foo+530d903a+AukyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2",
        "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2kAA==",
        "+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        "exa mple+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
    ],
)
def test_malformed_verifier_keys_are_refused(vkey: str) -> None:
    with pytest.raises(FormatError):
        NoteVerifier.from_key_string(vkey)


def test_key_id_hex_case_is_accepted() -> None:
    upper = SPEC_VKEY.replace("530d903a", "530D903A")
    assert NoteVerifier.from_key_string(upper) == NoteVerifier.from_key_string(SPEC_VKEY)


# --- signing -------------------------------------------------------------------------------------


def test_sign_note_requires_signers_and_a_valid_body(alice: Ed25519Signer) -> None:
    with pytest.raises(ValidationError, match="signer"):
        sign_note("body\n", [])
    for body in ["", "no newline", "tab\there\n", "nul\x00\n"]:
        with pytest.raises(FormatError):
            sign_note(body, [alice])


class _WrongKeySigner:
    """A misconfigured remote signer: advertises one key, signs with another."""

    name = "kms.example/log"
    public_key = Ed25519Signer.generate(name="x").public_key

    def sign(self, message: bytes) -> bytes:
        return Ed25519Signer.generate(name="y").sign(message)


def test_signer_whose_output_does_not_verify_is_refused() -> None:
    with pytest.raises(SignatureError, match=re.escape("kms.example/log")):
        sign_note("body\n", [_WrongKeySigner()])


def test_key_id_matches_the_spec_example() -> None:
    v = NoteVerifier.from_key_string(SPEC_VKEY)
    assert note_key_id(v.name, v.public_key) == bytes.fromhex("530d903a")


_line_chars = st.characters(min_codepoint=0x20, exclude_categories=("Cs",))
_bodies = st.lists(st.text(_line_chars, max_size=40), min_size=1, max_size=6).map(
    lambda lines: "".join(line + "\n" for line in lines)
)


@given(body=_bodies)
def test_any_valid_body_signs_opens_and_round_trips(body: str) -> None:
    signer = Ed25519Signer.from_seed(name="prop.example", seed=bytes(32))
    text = sign_note(body, [signer])
    note = open_note(text, [verifier(signer)])
    assert note.body == body
    assert format_note(parse_note(text)) == text
