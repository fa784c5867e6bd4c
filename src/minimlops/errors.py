"""The exception tree of minimlops: one base class, one subclass per kind."""


class MinimlopsError(Exception):
    """Base of every error minimlops raises on purpose."""


class SchemaError(MinimlopsError):
    """Input does not match a table's schema; the message says where."""


class ArtifactIntegrityError(MinimlopsError):
    """A model artifact is missing, truncated, tampered with or not a model."""


class NoChampionError(MinimlopsError):
    """No model is serving yet."""


class ModelNotFoundError(MinimlopsError):
    """A model version that does not exist was asked for."""


class ConflictError(MinimlopsError):
    """A concurrent change won (compare-and-swap failed); retry."""


class BackendNotInstalled(MinimlopsError, ImportError):
    """The backend needs an extra that is not installed; the message names it."""


class ExampleDataError(MinimlopsError):
    """The example data could not be found, downloaded or verified."""


class QueryError(MinimlopsError):
    """A query was refused (not read-only) or failed; the message says why."""


class DerivedFeatureError(MinimlopsError):
    """A project's derived feature raised on a row; names the feature and the row."""

    def __init__(
        self, feature: str, where: object, cause: BaseException, key: object = None
    ) -> None:
        self.feature, self.where, self.cause, self.key = feature, where, cause, key
        row = f"the row with key {key!r}" if key is not None else f"row {where!r}"
        super().__init__(
            f"derived feature {feature!r} failed on {row}: {type(cause).__name__}: {cause}"
        )


class Cancelled(MinimlopsError):
    """Work stopped because the server is stopping; its trigger is delivered
    again at the next start (nothing was promoted or acknowledged)."""


class ProjectMismatchError(MinimlopsError):
    """The data home holds another, incompatible project; the message says what to do."""
