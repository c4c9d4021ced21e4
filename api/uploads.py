"""Uploads: content sniffing and staging into a folder with safe names.

* :func:`sniff` recognises GeoTIFF/TIFF, PNG, JPEG and ZIP by their magic bytes; a file's
  extension is never trusted.
* :func:`stage_pairs` and :func:`stage_zip` write the support tiles a client sent into a
  private staging folder in the users' folder format (``images/``, ``masks/``, class file),
  under names the service makes up (``tile_0000.tif``). The client's file names serve only
  to pair images with masks and to name files in error messages; they never become paths.
  The staged folder is then read by :mod:`landcover.geo`'s own folder reader.
"""

from __future__ import annotations

import enum
import re
import shutil
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

from fastapi import UploadFile
from PIL import Image

from api.errors import BadInput, TooLarge, UnsupportedMedia
from landcover.geo.classes import MAX_CLASS_FILE_BYTES

CHUNK = 1024 * 1024


class Kind(enum.StrEnum):
    """Accepted content types, by magic bytes."""

    tiff = "tif"
    png = "png"
    jpeg = "jpg"
    zip = "zip"


RASTER_KINDS = frozenset({Kind.tiff, Kind.png, Kind.jpeg})
CLASS_FILES = ("classes.yaml", "classes.yml", "classes.json")


def sniff(head: bytes) -> Kind | None:
    """Recognise a file by its first bytes (``None`` when it is none of :class:`Kind`)."""
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return Kind.tiff
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return Kind.png
    if head[:3] == b"\xff\xd8\xff":
        return Kind.jpeg
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return Kind.zip
    return None


def shown(name: str | None) -> str:
    """A client file name made safe to echo in a message (quoted, bounded, printable)."""
    if not name:
        return "'<unnamed>'"
    clean = "".join(c if c.isprintable() else "?" for c in name)[:120]
    return repr(clean)


def _describe(head: bytes) -> str:
    if not head:
        return "it is empty"
    return f"its first bytes are {head[:8].hex(' ')}"


def save_stream(src: IO[bytes], dest: Path, allowed: frozenset[Kind], label: str) -> Kind:
    """Copy ``src`` to ``dest`` after checking its content type.

    Args:
        src: Readable binary stream (an upload's spooled file or a zip member).
        dest: Destination path (made by the service).
        allowed: Accepted kinds.
        label: How to name the file in an error (the client's file name, quoted).

    Returns:
        The sniffed kind.

    Raises:
        UnsupportedMedia: The content is not one of ``allowed``.
        BadInput: A PNG whose chunks are truncated or damaged (GDAL would read the missing
            rows as zeros without a word, so a cut-off upload would pass as real pixels).
    """
    head = src.read(16)
    kind = sniff(head)
    if kind is None or kind not in allowed:
        names = ", ".join(sorted(k.name.upper() if k != Kind.tiff else "GeoTIFF" for k in allowed))
        what = f"a {kind.name.upper()} file" if kind else "not a recognised format"
        raise UnsupportedMedia(
            f"file {label} is {what} ({_describe(head)}); upload {names} "
            "(the content decides, not the extension)"
        )
    with open(dest, "wb") as out:
        out.write(head)
        shutil.copyfileobj(src, out, CHUNK)
    if kind == Kind.png:
        _check_png(dest, label)
    return kind


def _check_png(path: Path, label: str) -> None:
    """422 ``corrupt_raster`` unless every chunk of the PNG is whole (CRCs, no truncation)."""
    try:
        with Image.open(path) as img:
            img.verify()  # walks the chunks and their checksums; decodes no pixels
    except Image.DecompressionBombError:
        return  # a big but intact header: the pixel limits answer it (413)
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as err:
        raise BadInput(
            f"file {label} is a damaged PNG ({err}); it was probably cut off while copying "
            "or uploading: export or send it again",
            "corrupt_raster",
        ) from None


def save_upload(upload: UploadFile, dest_stem: Path, allowed: frozenset[Kind]) -> Path:
    """Save an upload as ``dest_stem`` + the extension of its sniffed kind."""
    upload.file.seek(0)
    tmp = dest_stem.with_suffix(".part")
    try:
        kind = save_stream(upload.file, tmp, allowed, shown(upload.filename))
        final = dest_stem.with_suffix(f".{kind.value}")
        tmp.rename(final)
    finally:
        tmp.unlink(missing_ok=True)
    return final


@dataclass
class Staged:
    """Support tiles staged in the users' folder format.

    Attributes:
        folder: The staged region folder (``images/``, ``masks/``, maybe a class file).
        names: Staged path (as a string) -> the client's name for that file.
        class_file: The client's class file, when the zip had one.
    """

    folder: Path
    names: dict[str, str] = field(default_factory=dict)
    class_file: Path | None = None

    @property
    def tiles(self) -> int:
        """Number of staged image/mask pairs."""
        return len(list((self.folder / "images").iterdir()))

    def explain(self, message: str) -> str:
        """Replace staged paths in a data-layer message by the client's file names."""
        for path, name in sorted(self.names.items(), key=lambda kv: -len(kv[0])):
            message = message.replace(path, name)
        message = message.replace(str(self.folder) + "/", "").replace(str(self.folder), "upload")
        # a bare staged file name (the reader names "its image tile_0000.tif"); images
        # first, since an image and its mask may share a staged name in their two folders
        for path, name in sorted(self.names.items(), key=lambda kv: "/masks/" in kv[0]):
            pattern = rf"(?<![\w./]){re.escape(Path(path).name)}(?![\w.])"
            message = re.sub(pattern, lambda _, n=name: n, message)
        return message


def _check_count(n: int, max_tiles: int, how: str) -> None:
    if n == 0:
        raise BadInput(f"zero tiles: {how}", "zero_tiles")
    if n > max_tiles:
        raise BadInput(
            f"{n} tiles is more than this service's limit of {max_tiles} per adaptation; "
            "send the most representative ones",
            "too_many_tiles",
        )


def _duplicates(names: list[str]) -> list[str]:
    seen: set[str] = set()
    return sorted({n for n in names if n in seen or seen.add(n)})


def stage_pairs(
    images: list[UploadFile], masks: list[UploadFile], folder: Path, max_tiles: int
) -> Staged:
    """Stage image and mask uploads, paired by file stem (the users' folder rule)."""
    _check_count(
        len(images),
        max_tiles,
        "send labeled tiles as 'images' + 'masks' file fields (paired by file name) or one "
        "'archive' zip in the users' folder format",
    )
    by_stem: dict[str, dict[str, UploadFile]] = {"image": {}, "mask": {}}
    for role, files in (("image", images), ("mask", masks)):
        names = [f.filename or "" for f in files]
        if "" in names:
            raise BadInput(
                f"an uploaded {role} has no file name; name every file so images "
                "and masks can be paired",
                "unnamed_file",
            )
        dup = _duplicates(names)
        stems = [PurePosixPath(n.replace("\\", "/")).stem for n in names]
        dup += [s for s in _duplicates(stems) if s not in dup]
        if dup:
            raise BadInput(
                f"duplicate file names among the {role}s: {', '.join(map(shown, dup))}; give "
                "each tile a unique name (an image and its mask share the same stem)",
                "duplicate_names",
            )
        by_stem[role] = dict(zip(stems, files))
    lonely_i = sorted(set(by_stem["image"]) - set(by_stem["mask"]))
    lonely_m = sorted(set(by_stem["mask"]) - set(by_stem["image"]))
    if lonely_i or lonely_m:
        parts = []
        if lonely_i:
            parts.append(f"images without a mask: {', '.join(map(shown, lonely_i))}")
        if lonely_m:
            parts.append(f"masks without an image: {', '.join(map(shown, lonely_m))}")
        raise BadInput(
            "; ".join(parts) + ". Each image needs a mask with the same file stem "
            "(e.g. a.tif and a.png)",
            "unpaired_files",
        )
    staged = Staged(folder)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir(parents=True)
    for i, stem in enumerate(sorted(by_stem["image"])):
        for role, sub in (("image", "images"), ("mask", "masks")):
            upload = by_stem[role][stem]
            path = save_upload(upload, folder / sub / f"tile_{i:04d}", RASTER_KINDS)
            staged.names[str(path)] = shown(upload.filename)
    return staged


def _member_role(name: str) -> tuple[str, str] | None:
    """``("images"|"masks"|"classes", stem)`` of a zip member, or None to skip it."""
    clean = name.replace("\\", "/")
    parts = PurePosixPath(clean).parts
    if not parts or clean.startswith("/") or ":" in parts[0]:
        return None  # absolute paths and drive letters
    if any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return None  # "..", hidden files, macOS resource forks
    if len(parts) >= 2 and parts[-2] in ("images", "masks") and len(parts) <= 3:
        return parts[-2], PurePosixPath(parts[-1]).stem
    if parts[-1].lower() in CLASS_FILES and len(parts) <= 2:
        return "classes", parts[-1].lower()
    return None


def stage_zip(archive: UploadFile, folder: Path, max_tiles: int, max_bytes: int) -> Staged:
    """Stage a zip in the users' folder format (``images/``, ``masks/``, class file).

    One top-level folder around them is allowed. Members are extracted by content, under
    service-made names, with the total uncompressed size capped at ``max_bytes``.
    """
    archive.file.seek(0)
    label = shown(archive.filename)
    head = archive.file.read(8)
    archive.file.seek(0)
    if sniff(head) != Kind.zip:
        raise UnsupportedMedia(
            f"'archive' {label} is not a zip file ({_describe(head)}); zip a folder with "
            "images/, masks/ and a classes.yaml or classes.json"
        )
    try:
        zf = zipfile.ZipFile(archive.file)
        infos = [i for i in zf.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise BadInput(
            f"'archive' {label} is a corrupt zip ({exc}); re-create it", "corrupt_zip"
        ) from exc
    members: dict[str, dict[str, zipfile.ZipInfo]] = {"images": {}, "masks": {}, "classes": {}}
    dups: list[str] = []
    for info in infos:
        role = _member_role(info.filename)
        if role is None:
            continue
        sub, stem = role
        if stem in members[sub]:
            dups.append(info.filename)
        members[sub][stem] = info
    if dups:
        raise BadInput(
            f"duplicate file names in {label}: {', '.join(map(shown, dups))}; each image "
            "and mask stem must appear once",
            "duplicate_names",
        )
    if len(members["classes"]) > 1:
        raise BadInput(
            f"{label} has more than one class file; keep one of {CLASS_FILES}", "duplicate_names"
        )
    _check_count(
        len(members["images"]),
        max_tiles,
        f"{label} has no files under images/; the zip must hold images/ and masks/ "
        "folders (optionally inside one top-level folder)",
    )
    declared = sum(i.file_size for i in infos)
    if declared > max_bytes:
        raise TooLarge(
            f"{label} unpacks to {declared} bytes, more than the limit of "
            f"{max_bytes}; send fewer or smaller tiles"
        )
    lonely = sorted(set(members["images"]) ^ set(members["masks"]))
    if lonely:
        raise BadInput(
            f"in {label}, these stems have an image or a mask but not both: "
            f"{', '.join(map(shown, lonely))}; each image needs a mask with the same stem",
            "unpaired_files",
        )
    staged = Staged(folder)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir(parents=True)
    try:
        for i, stem in enumerate(sorted(members["images"])):
            for sub in ("images", "masks"):
                info = members[sub][stem]
                with zf.open(info) as src:
                    tmp = folder / sub / f"tile_{i:04d}.part"
                    kind = save_stream(src, tmp, RASTER_KINDS, shown(info.filename))
                    final = tmp.with_suffix(f".{kind.value}")
                    tmp.rename(final)
                staged.names[str(final)] = shown(info.filename)
        for name, info in members["classes"].items():
            if info.file_size > MAX_CLASS_FILE_BYTES:
                raise BadInput(
                    f"class file {shown(info.filename)} is {info.file_size} bytes, over the "
                    f"limit of {MAX_CLASS_FILE_BYTES}; a class file lists a few classes",
                    "invalid_class_file",
                )
            final = folder / name
            final.write_bytes(zf.read(info))
            staged.names[str(final)] = shown(info.filename)
            staged.class_file = final
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise BadInput(
            f"'archive' {label} is a corrupt zip ({exc}); re-create it", "corrupt_zip"
        ) from exc
    return staged


def stage_support(
    images: list[UploadFile],
    masks: list[UploadFile],
    archives: list[UploadFile],
    folder: Path,
    *,
    max_tiles: int,
    max_bytes: int,
) -> Staged:
    """Stage support tiles sent either as image/mask pairs or as one zip (not both)."""
    if archives and (images or masks):
        raise BadInput(
            "send either 'images' + 'masks' or one 'archive' zip, not both",
            "ambiguous_support",
        )
    if len(archives) > 1:
        raise BadInput(
            f"{len(archives)} 'archive' files; send one zip holding all tiles (images/, "
            "masks/, optional class file)",
            "ambiguous_support",
        )
    if archives:
        return stage_zip(archives[0], folder, max_tiles, max_bytes)
    return stage_pairs(images, masks, folder, max_tiles)
