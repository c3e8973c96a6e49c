"""Reading the project's text inputs (CSV lists, JSON records) with errors that name the file and the problem."""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from avscene.errors import InputFileError


def read_text(path: Path) -> str:
    """The UTF-8 text of ``path`` (a BOM is dropped); a binary or otherwise undecodable file is an
    :class:`InputFileError` naming it and the first bad byte."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise InputFileError(f"{path}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start} cannot be "
                             "decoded; a binary file, or text in another encoding?)") from None


def read_json(path: Path) -> Any:
    """The JSON value of ``path``; a truncated or malformed file is an :class:`InputFileError` naming it."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise InputFileError(f"{path}: not valid JSON ({err.msg} at line {err.lineno} column {err.colno}; "
                             "truncated or edited?)") from None


def csv_rows(path: Path, delimiter: str = ",") -> Iterator[tuple[int, list[str]]]:
    """``(line number, fields)`` of every record of the delimited text file ``path`` (BOM and CRLF tolerant); a
    field over the csv module's limit or a malformed record is an :class:`InputFileError` naming the file and line."""
    reader = csv.reader(io.StringIO(read_text(path), newline=""), delimiter=delimiter)
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise InputFileError(f"{path}:{reader.line_num}: {err}") from None
        yield reader.line_num, values
