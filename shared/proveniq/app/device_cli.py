"""`proveniq device`: device keys, registration through the API, and simulated telemetry.

    proveniq device keygen --out device.pem
    proveniq device register --api-url URL --api-key KEY --device ID --kind locker --key device.pem
    proveniq device simulate --device ID --key device.pem --count N --rate R --subject ASSET

`simulate` publishes with the real google-cloud-pubsub `PublisherClient`, so it reaches Cloud
Pub/Sub with the machine's credentials, or the local stack's Publisher API when
``PUBSUB_EMULATOR_HOST`` is set. Counters start at the current time in microseconds unless
`--start-counter` is given, so a later run never reuses an earlier run's counters.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from proveniq.intake.devices.ingest import TELEMETRY_TOPIC
from proveniq.intake.devices.message import build
from proveniq.intake.devices.registry import KINDS, encode_key
from proveniq.log.timefmt import utcnow


@click.group()
def device() -> None:
    """Devices: keys, registration and simulated signed telemetry."""


@device.command()
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite an existing key file.")
def keygen(out: Path, force: bool) -> None:
    """Create an Ed25519 device key (PKCS#8 PEM, mode 0600); print its public key."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(out, flags, 0o600)
    except FileExistsError:
        raise click.ClickException(f"{out} exists (use --force to replace it)") from None
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(pem)
    click.echo(public_key_b64(key))


@device.command()
@click.option("--api-url", envvar="PROVENIQ_API_URL", default="http://127.0.0.1:8080")
@click.option("--api-key", envvar="PROVENIQ_API_KEY", required=True, help="Needs org:settings.")
@click.option("--device", "device_id", required=True)
@click.option("--kind", required=True, type=click.Choice(sorted(KINDS)))
@click.option("--asset", default=None, help="The asset a smart tag is attached to.")
@click.option("--key", "key_file", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--timeout", default=30.0, show_default=True)
def register(
    api_url: str,
    api_key: str,
    device_id: str,
    kind: str,
    asset: str | None,
    key_file: Path,
    timeout: float,
) -> None:
    """Register a device through the API (POST /v1/devices); print the stored device."""
    body: dict[str, Any] = {
        "device_id": device_id,
        "kind": kind,
        "public_key": public_key_b64(load_key(key_file)),
    }
    if asset is not None:
        body["asset"] = asset
    if not api_url.startswith(("http://", "https://")):
        raise click.ClickException("--api-url must be an http:// or https:// URL")
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        api_url.rstrip("/") + "/v1/devices",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "X-API-Key": api_key},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            answer = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as e:
        raise click.ClickException(f"HTTP {e.code}: {e.read().decode(errors='replace')}") from e
    except (urllib.error.URLError, OSError) as e:
        raise click.ClickException(f"cannot reach {api_url}: {e}") from e
    if isinstance(answer, dict) and answer.get("success") is True and "data" in answer:
        answer = answer["data"]  # the Core manual's envelope
    click.echo(json.dumps(answer, indent=2, sort_keys=True))


@device.command()
@click.option("--device", "device_id", required=True)
@click.option("--key", "key_file", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--count", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--rate", default=1.0, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--subject", required=True, help="The asset id the readings are about.")
@click.option("--type", "event_type", default="device.reading", show_default=True)
@click.option("--project", envvar="GOOGLE_CLOUD_PROJECT", default="proveniq-local")
@click.option("--topic", default=TELEMETRY_TOPIC, show_default=True)
@click.option(
    "--start-counter",
    type=click.IntRange(min=1),
    default=None,
    help="First counter (default: the current time in microseconds).",
)
def simulate(
    device_id: str,
    key_file: Path,
    count: int,
    rate: float,
    subject: str,
    event_type: str,
    project: str,
    topic: str,
    start_counter: int | None,
) -> None:
    """Publish COUNT signed readings at RATE per second to the telemetry topic."""
    from google.cloud import pubsub_v1  # type: ignore[attr-defined,unused-ignore]

    key = load_key(key_file)
    first = start_counter if start_counter is not None else time.time_ns() // 1000
    client = pubsub_v1.PublisherClient(
        publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
    )
    path = client.topic_path(project, topic)
    started = time.monotonic()
    try:
        for i in range(count):
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            counter = first + i
            message = build(
                device=device_id,
                counter=counter,
                sent_at=utcnow(),
                type=event_type,
                subject=subject,
                data={"index": i, "temp_c": 20 + (i % 10) / 10},
                sign=key.sign,
            )
            future = client.publish(
                path, message.data, ordering_key=device_id, **dict(message.attributes)
            )
            try:
                message_id = future.result(timeout=30)
            except Exception as e:
                raise click.ClickException(f"publish of counter {counter} failed: {e}") from e
            click.echo(f"[{i + 1}/{count}] counter={counter} message_id={message_id}", err=True)
    finally:
        client.stop()
    elapsed = time.monotonic() - started
    click.echo(
        json.dumps(
            {
                "device": device_id,
                "published": count,
                "first_counter": first,
                "last_counter": first + count - 1,
                "topic": path,
                "seconds": round(elapsed, 3),
            }
        )
    )


def load_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as e:
        raise click.ClickException(f"{path}: not an unencrypted PEM private key") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise click.ClickException(f"{path}: not an Ed25519 key")
    return key


def public_key_b64(key: Ed25519PrivateKey) -> str:
    return encode_key(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(device())
