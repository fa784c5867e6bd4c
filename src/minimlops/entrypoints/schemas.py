"""Request models of the HTTP API: one passenger, with a message per field."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Passenger(BaseModel):
    """One passenger, with the data set's field names.

    Only Pclass, Sex, Age, SibSp, Parch, Fare and Embarked matter to the model
    (Name gives the title, Cabin the deck); Age, Fare and Embarked may be
    missing and are imputed as in training. Unknown fields are ignored.
    """

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    PassengerId: int | None = Field(None, ge=1, le=2**31 - 1)
    Pclass: int = Field(ge=1, le=3, description="ticket class: 1, 2 or 3")
    Name: str | None = Field(None, max_length=300)
    Sex: str = Field(pattern="^(male|female)$", description="male or female")
    Age: float | None = Field(None, ge=0, le=150, allow_inf_nan=False)
    SibSp: int = Field(ge=0, le=100, description="siblings and spouses aboard")
    Parch: int = Field(ge=0, le=100, description="parents and children aboard")
    Ticket: str | None = Field(None, max_length=100)
    Fare: float | None = Field(None, ge=0, le=1_000_000, allow_inf_nan=False)
    Cabin: str | None = Field(None, max_length=100)
    Embarked: str | None = Field(None, pattern="^[CQS]$", description="C, Q or S")

    @field_validator("Name", "Ticket", "Cabin", "Embarked", mode="before")
    @classmethod
    def _empty_is_missing(cls, value: Any) -> Any:
        return None if value == "" else value


class Feedback(BaseModel):
    """A true label for an earlier prediction (used by monitoring)."""

    uuid: str = Field(min_length=1, max_length=64)
    Survived: int = Field(ge=0, le=1)


class TrainRequest(BaseModel):
    reason: str = Field("requested by a person", max_length=500)


class PromoteRequest(BaseModel):
    reason: str = Field("promoted by a person", max_length=500)


class QueryRequest(BaseModel):
    sql: str = Field(min_length=1, max_length=100_000)
