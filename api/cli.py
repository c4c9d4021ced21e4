"""``landcover serve [--host --port --workers]``: run the REST service under uvicorn.

Configuration comes from ``LANDCOVER_*`` environment variables (see :mod:`api.settings`);
``--data-dir``, ``--models-dir`` and ``--api-keys`` are shortcuts that set them for every
worker process. With ``--workers N`` uvicorn starts N processes; they share the database
and the storage folder, and each runs its own job runner.
"""

from __future__ import annotations

import argparse
import os

from pydantic import ValidationError


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    p = argparse.ArgumentParser(
        prog="landcover serve",
        description="Run the landcover REST service (OpenAPI docs at /docs).",
    )
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    p.add_argument("--data-dir", help="storage folder (sets LANDCOVER_DATA_DIR)")
    p.add_argument("--models-dir", help="folder of base *.bundle files (LANDCOVER_MODELS_DIR)")
    p.add_argument("--api-keys", help="comma-separated API keys (LANDCOVER_API_KEYS)")
    p.add_argument("--log-level", default="info", help="uvicorn log level")
    return p


def main(argv: list[str]) -> int:
    """Parse ``argv`` and serve until interrupted; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.workers < 1:
        print("landcover serve: --workers must be at least 1")
        return 2
    for flag, env in (
        ("data_dir", "LANDCOVER_DATA_DIR"),
        ("models_dir", "LANDCOVER_MODELS_DIR"),
        ("api_keys", "LANDCOVER_API_KEYS"),
    ):
        value = getattr(args, flag)
        if value is not None:
            os.environ[env] = value
    from api.settings import Settings

    try:
        Settings()
    except ValidationError as err:
        print(f"landcover serve: invalid configuration:\n{err}")
        return 2
    import uvicorn

    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        proxy_headers=True,
    )
    return 0
