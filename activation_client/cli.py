"""`activation-client`: the product's license check from a shell or a start-up script.

    activation-client check --server URL --key K --fingerprint F --product P --version V
                            [--public-key B64 ...] [--state-dir DIR] [--max-wait S]
    (without --public-key: the comma-separated keys in ACTIVATION_PUBLIC_KEYS)
    activation-client verify-file FILE --public-key B64 [--public-key B64 ...] [--fingerprint F]

Prints the decision as JSON; exit 0 when valid, 1 when a trusted answer says no, 2 when no
trusted decision could be had (activation_client/client.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from activation_client.client import ActivationClient, Verdict, verify_file
from activation_client.verify import PinnedKeys

KEYS_ENV = "ACTIVATION_PUBLIC_KEYS"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="activation-client",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="phone home and verify the answer")
    check.add_argument("--server", required=True, help="the activation API, e.g. https://…")
    check.add_argument("--key", required=True, help="the license key")
    check.add_argument("--fingerprint", required=True, help="this server's stable fingerprint")
    check.add_argument("--product", required=True)
    check.add_argument("--version", required=True, help="MAJOR.MINOR.BUILD of this build")
    check.add_argument("--hostname")
    check.add_argument("--addon", action="append", default=[], help="an add-on to request")
    check.add_argument(
        "--public-key",
        action="append",
        default=[],
        help="a pinned public key (base64, raw 32 bytes); repeat for several "
        f"(default: the comma-separated keys in {KEYS_ENV})",
    )
    check.add_argument("--state-dir", type=Path, help="where the last verified answer is kept")
    check.add_argument(
        "--max-wait", type=float, default=30.0, help="seconds to keep retrying (default 30)"
    )
    verify = commands.add_parser("verify-file", help="check an offline license file")
    verify.add_argument("file", type=Path)
    verify.add_argument("--public-key", action="append", required=True)
    verify.add_argument("--fingerprint", help="this server's fingerprint (checked when given)")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    pinned = args.public_key or [k for k in os.environ.get(KEYS_ENV, "").split(",") if k.strip()]
    try:
        keys = PinnedKeys.from_base64(key.strip() for key in pinned)
    except ValueError as error:  # nothing can be trusted without a pinned key: undecided
        _print(Verdict(False, False, "none", f"{error} (--public-key or {KEYS_ENV})"))
        sys.exit(2)
    if args.command == "check":
        verdict = ActivationClient(
            server=args.server,
            license_key=args.key,
            fingerprint=args.fingerprint,
            product=args.product,
            version=args.version,
            public_keys=keys,
            state_dir=args.state_dir,
            hostname=args.hostname,
            addons=tuple(args.addon),
            max_wait=max(0.0, args.max_wait),
        ).check()
    else:
        try:
            text = args.file.read_text(errors="replace")
        except OSError as error:
            verdict = Verdict(False, False, "none", f"cannot read {args.file}: {error}")
        else:
            verdict = verify_file(text, keys, args.fingerprint, datetime.now(UTC))
    _print(verdict)
    sys.exit(verdict.exit_code)


def _print(verdict: Verdict) -> None:
    print(json.dumps(verdict.to_json(), indent=2))
