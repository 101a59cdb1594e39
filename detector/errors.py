"""Errors the CLI turns into one-line messages (no traceback unless --debug)."""


class DetectorError(Exception):
    """Base class: the message is shown to the user as is, so make it actionable."""


class InputError(DetectorError):
    """A file the user gave cannot be read as the format asked for."""

    def __init__(self, path, problem: str, line: int | None = None):
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {problem}")
        self.path, self.line, self.problem = path, line, problem


class WarehouseBusy(DetectorError):
    """Another process holds the warehouse for writing."""


class WarehouseVersionError(DetectorError):
    """The warehouse file was made by a version this one cannot migrate."""


class ConfigError(DetectorError):
    """A settings or mapping file has an unknown key or a wrong type."""
