"""`proveniq` command line: offline verification, the local demo, and (later) operations."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Literal

import click

from proveniq.errors import NotFound, ProveniqError, ValidationError, VerificationError
from proveniq.log import merkle
from proveniq.log.bundle import Bundle, verifiers_for, verify_bundle
from proveniq.log.canonical import parse_strict
from proveniq.log.checkpoint import open_checkpoint
from proveniq.log.entry import hex32
from proveniq.log.keys import load_public_key

EXIT_FAILED = 1
EXIT_MALFORMED = 2


@click.group()
@click.version_option(package_name="proveniq-ledger")
def main() -> None:
    """Proveniq Ledger: verifiable evidence ledger tools."""


@main.command()
@click.argument("bundle_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--key",
    "key_file",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="Log public key: PEM, or a C2SP note verifier key string.",
)
def verify(bundle_file: Path, key_file: Path) -> None:
    """Check a proof bundle offline: payload -> leaf -> inclusion -> checkpoint signature."""
    with _reporting():
        key = load_public_key(key_file)
        bundle = Bundle.from_json(unwrap(parse_strict(bundle_file.read_bytes(), field="bundle")))
        verdict = verify_bundle(bundle, verifiers_for(bundle.checkpoint, key.public_key, key.name))
        cp = verdict.checkpoint
        payload = "payload checked" if bundle.payload is not None else "payload not included"
        click.echo(
            f"OK: entry {bundle.entry.id} (seq {bundle.entry.seq}, {payload}) is in log "
            f"{cp.origin!r} of size {cp.size}, root {cp.root_hash.hex()}, "
            f"signed by {', '.join(verdict.signed_by)}"
        )


@main.command("verify-consistency")
@click.argument("old_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("new_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--proof",
    "proof_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='Consistency proof JSON: {"from": m, "to": n, "proof": [hex, ...]}.',
)
@click.option("--key", "key_file", required=True, type=click.Path(exists=True, path_type=Path))
def verify_consistency(old_file: Path, new_file: Path, proof_file: Path, key_file: Path) -> None:
    """Check that checkpoint NEW extends checkpoint OLD (the log never rewrote its past).

    OLD and NEW are signed checkpoint files (or bundles, whose checkpoint is used).
    """
    with _reporting():
        key = load_public_key(key_file)
        old_text, new_text = _checkpoint_text(old_file), _checkpoint_text(new_file)
        old, _ = open_checkpoint(old_text, verifiers_for(old_text, key.public_key, key.name))
        new, note = open_checkpoint(new_text, verifiers_for(new_text, key.public_key, key.name))
        if old.origin != new.origin:
            raise VerificationError(
                "checkpoints are from different logs",
                what="origin",
                expected=old.origin,
                found=new.origin,
            )
        doc = unwrap(parse_strict(proof_file.read_bytes(), field="proof"))
        if not isinstance(doc, dict) or not isinstance(doc.get("proof"), list):
            raise ValidationError('expected {"from", "to", "proof": [hex]}', field="proof")
        for name, want in (("from", old.size), ("to", new.size)):
            if doc.get(name) != want:
                raise VerificationError(
                    f"proof '{name}' does not match the checkpoint size",
                    what=f"proof.{name}",
                    expected=str(want),
                    found=str(doc.get(name)),
                )
        proof = [hex32(h, field=f"proof[{i}]") for i, h in enumerate(doc["proof"])]
        merkle.verify_consistency(old.size, new.size, old.root_hash, new.root_hash, proof)
        click.echo(
            f"OK: log {new.origin!r} size {new.size} is consistent with size {old.size} "
            f"(signed by {', '.join(note.verified_by)})"
        )


@main.command()
@click.option(
    "--dir",
    "out_dir",
    default=".proveniq/demo",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
)
@click.option("--entries", default=25, show_default=True, type=click.IntRange(2, 100_000))
def demo(out_dir: Path, entries: int) -> None:
    """Build a small log offline, write bundles and checkpoints, and verify them."""
    from proveniq.app.demo import run_demo

    run_demo(out_dir=out_dir, entries=entries, echo=click.echo)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=None, help="Gateway port (default $PORT or 8080).")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Server processes (more than 1 uses gunicorn; one interpreter is GIL-bound).",
)
def serve(host: str, port: int | None, workers: int) -> None:
    """Run the whole system locally: embedded PostgreSQL, functions, gateway, bus."""
    from proveniq.app import localstack
    from proveniq.settings import Settings

    with _reporting():
        settings = Settings.from_env()
        if port is not None:
            settings = settings.model_copy(update={"port": port})
        localstack.run(settings, host=host, echo=click.echo, workers=workers)


@main.group()
def admin() -> None:
    """Bootstrap and manage partners and API keys directly in the database."""


@admin.command("create-partner")
@click.argument("name")
@click.option(
    "--tier",
    default="free",
    show_default=True,
    type=click.Choice(["free", "pro", "enterprise", "internal"]),
)
def admin_create_partner(name: str, tier: str) -> None:
    """Create a partner (organization)."""
    with _reporting():
        partner = _runtime().accounts.create_partner(name=name, tier=tier)
        click.echo(json.dumps(partner.to_json()))


@admin.command("create-key")
@click.option("--partner", "partner_id", default=None, help="Partner id (omit for a platform key).")
@click.option("--role", default=None, type=click.Choice(["OWNER", "ADMIN", "MEMBER", "VIEWER"]))
@click.option(
    "--global-role", default="USER", type=click.Choice(["ADMIN", "AUDITOR", "INVESTOR", "USER"])
)
@click.option("--label", default="")
def admin_create_key(
    partner_id: str | None, role: str | None, global_role: str, label: str
) -> None:
    """Create an API key; the key is printed once on stdout."""
    with _reporting():
        new, rec = _runtime().accounts.create_key(
            partner_id=partner_id, org_role=role, global_role=global_role, label=label
        )
        click.echo(f"created {rec.id} ({rec.prefix}); store this key now:", err=True)
        click.echo(new.secret)


@admin.command("revoke-key")
@click.argument("key_id")
def admin_revoke_key(key_id: str) -> None:
    """Revoke an API key by id (key_...)."""
    with _reporting():
        _runtime().accounts.revoke_key(key_id)
        click.echo(f"revoked {key_id}")


@main.command()
@click.option(
    "--key",
    "key_file",
    default=None,
    type=click.Path(exists=True, path_type=Path),
    help="Log public key (PEM or verifier key); default: this deployment's signer.",
)
def audit(key_file: Path | None) -> None:
    """Recompute chain and tree from the database; check every checkpoint. Exit 1 on any
    divergence, naming the first one."""
    from proveniq.ledger.audit import audit as run_audit
    from proveniq.log.note import NoteVerifier

    with _reporting():
        rt = _runtime()
        if key_file is not None:
            key = load_public_key(key_file)
            verifiers = [
                NoteVerifier.from_public_key(
                    name=key.name or rt.settings.log_origin, public_key=key.public_key
                )
            ]
        else:
            verifiers = rt.verifiers()
        with rt.ledger.audit_snapshot() as view:
            report = run_audit(
                view,
                verifiers,
                origin=rt.settings.log_origin,
                progress=lambda m: click.echo(m, err=True),
            )
        if report.ok:
            click.echo(
                f"OK: {report.entries} entries, {report.nodes} nodes, "
                f"{report.checkpoints} checkpoints verified"
            )
            return
        click.echo(f"FAILED: {report.problems[0]}", err=True)
        for p in report.problems[1:20]:
            click.echo(f"  also: {p}", err=True)
        sys.exit(EXIT_FAILED)


@main.command()
@click.option("--rebuild", is_flag=True, required=True, help="Rebuild every document from the log.")
def project(rebuild: bool) -> None:
    """Rebuild the Firestore projection for apps from the ledger (nothing in Firestore is a
    source of truth). Pause the projection's subscription while it runs."""
    from proveniq.followers.projection.rebuild import rebuild as run_rebuild
    from proveniq.ports import EventFilter

    with _reporting():
        rt = _runtime()
        sink = rt.projection
        if sink is None:
            raise ValidationError("no projection configured", field="PROVENIQ_FIRESTORE_PROJECT")

        def events() -> Any:
            after = None
            while True:
                page = rt.queries.events(EventFilter(tenant=None, after_seq=after, limit=1000))
                for ev in page:
                    yield ev.entry, None if ev.payload is None else json.loads(ev.payload)
                if len(page) < 1000:
                    return
                after = page[-1].entry.seq

        try:
            size = rt.proofs.checkpoint().size
        except NotFound:
            size = 0
        report = run_rebuild(
            sink,
            events(),
            tree_size=size,
            progress=lambda stage, n: click.echo(f"{stage}: {n}", err=True),
        )
        click.echo(
            f"OK: {report.events} events -> {report.documents} documents "
            f"({report.tenants} organizations, {report.deleted} stale removed)"
        )


@main.command()
def migrate() -> None:
    """Apply pending database migrations (embedded server or PROVENIQ_DATABASE_URL)."""
    from proveniq.app import localstack
    from proveniq.settings import Settings

    with _reporting():
        settings = Settings.from_env()
        if settings.database_url:
            from proveniq.adapters.postgres import pool

            pool.migrate(pool.url_connector(settings.database_url))
        else:
            localstack.prepare(settings)
        click.echo("migrations applied")


def _runtime() -> Any:
    from proveniq.app import localstack
    from proveniq.app.runtime import runtime
    from proveniq.settings import Settings

    settings = Settings.from_env()
    if settings.backend == "local":
        localstack.prepare(settings)
    return runtime()


def unwrap(doc: Any) -> Any:
    """Accept an API answer as saved by `curl`: the Core manual's envelope around the object."""
    if isinstance(doc, dict) and doc.get("success") is True and "data" in doc:
        return doc["data"]
    return doc


def _checkpoint_text(path: Path) -> str:
    raw = path.read_bytes()
    if raw.lstrip().startswith(b"{"):
        doc: Any = unwrap(parse_strict(raw, field=str(path)))
        if isinstance(doc, dict) and isinstance(doc.get("checkpoint"), str):
            return str(doc["checkpoint"])
        raise ValidationError("JSON file has no 'checkpoint' text", field=str(path))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValidationError("checkpoint is not UTF-8", field=str(path)) from e


class _reporting:
    """Turn kernel errors into one line on stderr and a non-zero exit code."""

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: Any
    ) -> Literal[False]:
        if isinstance(e, VerificationError):
            click.echo(f"FAILED: {e.what or 'verification'}: {e.message}{_diff(e)}", err=True)
            sys.exit(EXIT_FAILED)
        if isinstance(e, ProveniqError):
            field = getattr(e, "field", "")
            click.echo(
                f"FAILED: malformed input{f' ({field})' if field else ''}: {e.message}", err=True
            )
            sys.exit(EXIT_MALFORMED)
        if isinstance(e, OSError):
            click.echo(f"FAILED: {e}", err=True)
            sys.exit(EXIT_MALFORMED)
        return False


def _diff(e: VerificationError) -> str:
    if e.expected or e.found:
        return f" (expected {e.expected or '?'}, found {e.found or '?'})"
    return ""


def _attach_device_commands() -> None:
    from proveniq.app.device_cli import device

    main.add_command(device)


_attach_device_commands()

if __name__ == "__main__":  # pragma: no cover
    main()
