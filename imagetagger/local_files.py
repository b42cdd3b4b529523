"""Local image files for the commands that tag them (``predict``, ``tag``), with the
service's limits and error types, so a file and an upload of it get the same answer."""

from __future__ import annotations

from imagetagger.errors import ImageTooLarge


def read_image_file(path: str, max_bytes: int) -> bytes:
    """The file's bytes, reading at most one byte past the API's upload size limit."""
    with open(path, "rb") as file:
        data = file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ImageTooLarge()
    return data


def file_error(exc: OSError) -> tuple[str, str]:
    """Error type and detail of a file that cannot be read: FileNotFound or UnreadableFile."""
    error_type = "FileNotFound" if isinstance(exc, FileNotFoundError) else "UnreadableFile"
    return error_type, exc.strerror or str(exc)
