"""The analysts' page at ``/``, offline API docs at ``/docs`` and ``/redoc``, page helpers.

Everything the page needs is served by this app from :mod:`api.web` (plain HTML, CSS and
JavaScript without a build step; Swagger UI and ReDoc vendored from npm with their
licences under ``api/web/vendor``), so the page and the docs work without internet.

Two small helpers exist for the page only (they are not part of the versioned ``/v1``):

* ``GET /web/config``: whether the service runs in *local mode* (``landcover serve`` on a
  loopback address without configured keys generates a key for the session). Only a
  client on the loopback interface is given that key, so the page works without setup on
  ``127.0.0.1`` and asks for a key everywhere else.
* ``POST /web/preview``: an RGB PNG quicklook of an uploaded raster (GeoTIFF, PNG, JPEG),
  so that the browser can show GeoTIFFs under the predicted map and paint on them.
"""

from __future__ import annotations

import io
import ipaddress
from pathlib import Path
from typing import Annotated

import numpy as np
import rasterio
from fastapi import APIRouter, FastAPI, File, Form, Request, UploadFile
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from rasterio.errors import RasterioIOError

from api.deps import Svc
from api.errors import BadInput, TooLarge
from api.schemas import error_responses
from api.security import Owner
from api.uploads import RASTER_KINDS, save_upload, shown

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
STATIC = "/static"
#: Longest side of a preview; larger rasters are read downsampled (overviews when present).
PREVIEW_MAX_SIDE = 2048
#: Band-name triples recognised as (red, green, blue), case-insensitive.
RGB_NAMES = (("b04", "b03", "b02"), ("red", "green", "blue"), ("r", "g", "b"))

router = APIRouter(include_in_schema=False)


class WebSettings(BaseSettings):
    """Page settings (``LANDCOVER_LOCAL_KEY`` is set by ``landcover serve`` in local mode)."""

    model_config = SettingsConfigDict(env_prefix="LANDCOVER_", extra="ignore")

    local_key: str | None = None


class WebConfig(BaseModel):
    """What the page needs to know before the first ``/v1`` call."""

    local: bool = Field(description="The service runs in local mode (loopback, generated key).")
    key: str | None = Field(None, description="The local mode's key (loopback clients only).")


def is_loopback(host: str | None) -> bool:
    """Whether a client address is on the loopback interface."""
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@router.get("/", response_class=FileResponse)
def page() -> FileResponse:
    """The analysts' page."""
    return FileResponse(WEB_DIR / "index.html", media_type="text/html")


@router.get("/web/config")
def config(request: Request) -> WebConfig:
    """Local mode and, for a loopback client, its key."""
    local_key = request.app.state.web_settings.local_key
    local = bool(local_key) and local_key in request.app.state.settings.api_keys
    client = request.client.host if request.client else None
    return WebConfig(local=local, key=local_key if local and is_loopback(client) else None)


def rgb_bands(names: list[str], count: int) -> list[int]:
    """1-based band indexes shown as red, green, blue (grey when fewer than 3 bands)."""
    lower = [n.lower() for n in names]
    if len(lower) == count:
        for triple in RGB_NAMES:
            if all(n in lower for n in triple):
                return [lower.index(n) + 1 for n in triple]
    return [1, 2, 3] if count >= 3 else [1, 1, 1]


def stretch(data: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """2–98 % percentile stretch of each band to uint8 (invalid pixels black)."""
    out = np.zeros(data.shape, dtype=np.uint8)
    for i, band in enumerate(data):
        values = band[valid]
        if values.size == 0:
            continue
        lo, hi = np.percentile(values, [2, 98])
        scale = 255.0 / max(float(hi - lo), 1e-6)
        out[i] = np.clip((band - lo) * scale, 0, 255).astype(np.uint8)
    out[:, ~valid] = 0
    return out


@router.post(
    "/web/preview",
    responses={200: {"content": {"image/png": {}}}, **error_responses(401, 413, 415, 422)},
)
def preview(
    _: Owner,
    services: Svc,
    raster: Annotated[UploadFile, File(description="GeoTIFF, PNG or JPEG.")],
    model: Annotated[str | None, Form(max_length=128)] = None,
) -> Response:
    """An RGB PNG quicklook of ``raster``; headers give the raster's full size."""
    names: list[str] = []
    if model:
        try:
            names = list(services.engine.base(model).bands)
        except Exception:  # an unknown model only loses the band-name hint
            names = []
    label = f"raster {shown(raster.filename)}"
    limit = services.settings.max_raster_pixels
    with services.store.staging() as folder:
        path = save_upload(raster, folder / "raster", RASTER_KINDS)  # sniffed: 415 if not
        try:
            with rasterio.open(path) as src:
                width, height, count = src.width, src.height, src.count
                if width * height > limit:
                    raise TooLarge(
                        f"{label} has {width}×{height} pixels, more than this service's "
                        f"limit of {limit}; split it into smaller rasters",
                        "too_many_pixels",
                    )
                scale = min(1.0, PREVIEW_MAX_SIDE / max(width, height))
                shape = (max(1, round(height * scale)), max(1, round(width * scale)))
                bands = rgb_bands(names, count)
                arr = src.read(bands, out_shape=(3, *shape), masked=True).astype(np.float32)
                eight_bit = all(src.dtypes[b - 1] == "uint8" for b in bands)
        except RasterioIOError:
            raise BadInput(
                f"{label} cannot be read; upload an intact GeoTIFF, PNG or JPEG",
                "corrupt_raster",
            ) from None
    valid = ~np.ma.getmaskarray(arr).any(axis=0)
    data = np.ma.getdata(arr)
    # 8-bit imagery (photos, RGB JPEG/PNG) is shown as it is; other data is stretched
    rgb = np.where(valid, data, 0).astype(np.uint8) if eight_bit else stretch(data, valid)
    buf = io.BytesIO()
    Image.fromarray(np.moveaxis(rgb, 0, -1)).save(buf, format="PNG")
    return Response(
        buf.getvalue(),
        media_type="image/png",
        headers={"X-Raster-Width": str(width), "X-Raster-Height": str(height)},
    )


@router.get("/docs", response_class=HTMLResponse)
def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI from the vendored swagger-ui-dist (no CDN)."""
    return get_swagger_ui_html(
        openapi_url=request.app.openapi_url,
        title=f"{request.app.title} – Swagger UI",
        swagger_js_url=f"{STATIC}/vendor/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url=f"{STATIC}/vendor/swagger-ui/swagger-ui.css",
        swagger_favicon_url=f"{STATIC}/favicon.svg",
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get("/redoc", response_class=HTMLResponse)
def redoc(request: Request) -> HTMLResponse:
    """ReDoc from the vendored redoc bundle (no CDN, no web fonts)."""
    return get_redoc_html(
        openapi_url=request.app.openapi_url,
        title=f"{request.app.title} – ReDoc",
        redoc_js_url=f"{STATIC}/vendor/redoc/redoc.standalone.js",
        redoc_favicon_url=f"{STATIC}/favicon.svg",
        with_google_fonts=False,
    )


def install(app: FastAPI) -> None:
    """Add the page, its assets, its helpers and the offline docs to ``app``.

    The app must be created with ``docs_url=None, redoc_url=None`` (this replaces them).
    """
    app.state.web_settings = WebSettings()
    app.mount(STATIC, StaticFiles(directory=WEB_DIR), name="static")
    app.include_router(router)
