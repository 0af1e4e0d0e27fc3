"""The product's side of license activation (SPEC §5, "The product's client").

Standard library plus `cryptography` only; nothing of the server is imported, so a product can
vendor this package alone.

- `verify`: signature, nonce, freshness and validity checks of one answer (pure, `now` given)
- `licensefile`: the armored offline license file (format, parse)
- `backoff`: full-jitter exponential retry delays that honour Retry-After
- `state`: the last verified answer, kept on disk for outages
- `client`: `ActivationClient.check()` (phone home, verify, fall back) and `verify_file()`
- `cli`: the `activation-client` command
"""
