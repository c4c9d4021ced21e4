"""Service configuration, read from ``LANDCOVER_*`` environment variables (pydantic-settings).

Every knob an operator may turn lives here, with the environment variable that sets it:

* ``LANDCOVER_DATA_DIR``: storage folder (database file, adapted weights, staging area).
* ``LANDCOVER_MODELS_DIR``: folder of base model bundles (``*.bundle``); a bundle's name is
  its file stem.
* ``LANDCOVER_DATABASE_URL``: SQLAlchemy URL; SQLite in the data folder by default,
  e.g. ``postgresql+psycopg://user:pass@db/landcover`` for PostgreSQL.
* ``LANDCOVER_API_KEYS``: comma-separated API keys (``X-API-Key`` header). Each key is a
  separate tenant: it sees only the adaptations it created.
* Limits: upload bytes, pixels per raster, tiles per adaptation, compute per request
  (GFLOP) and time per job, active jobs per key and in total, concurrent predictions,
  requests per key (see the fields below).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MiB = 1024 * 1024


class Settings(BaseSettings):
    """Configuration of one service process (all fields settable as ``LANDCOVER_<NAME>``)."""

    model_config = SettingsConfigDict(env_prefix="LANDCOVER_", extra="ignore")

    data_dir: Path = Field(Path("runs/service"), description="Storage folder.")
    models_dir: Path = Field(Path("models"), description="Folder of base *.bundle files.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default SQLite file in data_dir."
    )
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Accepted API keys (comma-separated in the env)."
    )

    max_upload_bytes: int = Field(512 * MiB, gt=0, description="Largest request body.")
    max_raster_pixels: int = Field(
        100_000_000, gt=0, description="Largest raster (width x height) accepted for predict."
    )
    max_tile_pixels: int = Field(
        4096 * 4096,
        gt=0,
        description="Largest support tile (width x height); the service cuts each tile into "
        "the crops adaptation uses, so a large tile costs reading time, not adaptation time.",
    )
    max_tiles: int = Field(32, gt=0, description="Most labeled tiles in one adaptation.")
    max_support_pixels: int = Field(
        8 * 4096 * 4096,
        gt=0,
        description="Most pixels of all support tiles together (tiles are read one at a time).",
    )
    max_steps: int = Field(100, gt=0, description="Most inner steps a client may ask for.")
    max_active_jobs_per_key: int = Field(
        8, gt=0, description="Queued + running adaptations allowed per API key."
    )
    max_active_jobs: int = Field(64, gt=0, description="Queued + running adaptations in total.")
    job_workers: int = Field(1, gt=0, description="Adaptations run at once by one process.")
    predict_concurrency: int = Field(2, gt=0, description="Predictions run at once.")
    predict_wait_s: float = Field(
        60.0, ge=0, description="How long a prediction waits for a free slot before a 429."
    )
    segment_max_pixels: int = Field(
        16 * 1024 * 1024, gt=0, description="Largest query raster of the synchronous /segment."
    )
    window: int | None = Field(None, gt=0, description="Sliding-window size (default: tile).")

    max_predict_gflop: float = Field(
        2500.0,
        gt=0,
        description="Most compute one prediction may cost: raster pixels × the model's "
        "FLOP per pixel, in GFLOP (about 2 minutes on 2 CPU cores).",
    )
    max_adapt_gflop: float = Field(
        2500.0,
        gt=0,
        description="Most compute one adaptation may cost: 3 × (steps + 2) × support pixels "
        "(at most the adaptation's crop pool) × 3 × the model's FLOP per pixel, in GFLOP.",
    )
    job_time_limit_s: float = Field(
        900.0, gt=0, description="An adaptation running longer fails with a reason."
    )
    predict_time_limit_s: float = Field(
        300.0, gt=0, description="A prediction running longer is stopped (503)."
    )
    max_attempts: int = Field(
        3, gt=0, description="Runs a job may start (a replica dying mid-job costs one)."
    )
    rate_limit: str = Field(
        "30/second;1200/minute",
        description="Requests per API key (limits notation; burst;sustained), per process.",
    )
    auth_failure_limit: str = Field(
        "10/minute", description="Failed authentications per client address, per process."
    )
    db_pool_size: int = Field(10, gt=0, description="Database connections per process.")
    db_pool_timeout_s: float = Field(
        5.0, gt=0, description="Wait for a free database connection before a 503."
    )

    heartbeat_s: float = Field(2.0, gt=0, description="Running jobs' heartbeat period.")
    stale_after_s: float = Field(
        30.0, gt=0, description="A running job without heartbeat this long is marked failed."
    )
    poll_s: float = Field(1.0, gt=0, description="How often a worker looks for queued jobs.")
    torch_threads: int | None = Field(None, gt=0, description="torch intra-op threads.")

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @field_validator("api_keys")
    @classmethod
    def _check_keys(cls, value: list[str]) -> list[str]:
        short = [k for k in value if len(k) < 16]
        if short:
            raise ValueError(
                f"{len(short)} API key(s) shorter than 16 characters; use long random keys, "
                "e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        return value

    @property
    def db_url(self) -> str:
        """The database URL actually used (SQLite in ``data_dir`` unless set)."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'landcover.db').resolve()}"


def get_settings() -> Settings:
    """Read the settings from the environment (called once per app)."""
    return Settings()
