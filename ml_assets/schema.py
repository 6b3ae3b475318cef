"""The listing schema of the seed's batch API, shared by ingestion, validation, training and serving."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# column -> pandas dtype, in the API's order
COLUMNS: dict[str, str] = {
    "brokered_by": "float64",
    "status": "string",
    "price": "float64",
    "bed": "float64",
    "bath": "float64",
    "acre_lot": "float64",
    "street": "string",
    "city": "string",
    "state": "string",
    "zip_code": "float64",
    "house_size": "float64",
    "prev_sold_date": "string",
}
TARGET = "price"
# Columns watched for data drift: the model's inputs minus identifiers (broker id, street) and the sale date,
# whose values are mostly unique per row, so any window "drifts" on them (Evidently users drop them the same way).
DRIFT_COLUMNS = ["status", "bed", "bath", "acre_lot", "city", "state", "zip_code", "house_size"]
STATUSES = ("for_sale", "sold", "ready_to_build")


class Listing(BaseModel):
    """One listing as the inference API accepts it: everything but the price, bounded to sane values.

    The input rule (README, "Serving"): the fields that describe the house and its place are required keys, so
    `{}` is a 422 naming each one rather than a price for nothing. Their value may be null ("unknown", as a batch
    may have it), except the living area, which the price depends on most. Numbers may arrive as numeric strings
    ("3" is 3.0, as JSON APIs often quote them); anything else, NaN and Infinity are refused.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    brokered_by: float | None = Field(None, ge=0, description="broker / agency id")
    status: Literal["for_sale", "sold", "ready_to_build"] = "for_sale"
    bed: float | None = Field(..., ge=0, le=100)
    bath: float | None = Field(..., ge=0, le=100)
    acre_lot: float | None = Field(..., ge=0, le=100_000)
    street: str | None = Field(None, max_length=200)
    city: str | None = Field(..., max_length=100)
    state: str | None = Field(..., max_length=100)
    zip_code: float | None = Field(..., ge=0, le=99_999)
    house_size: float = Field(..., gt=0, le=1_000_000, description="living area, square feet")
    prev_sold_date: str | None = Field(None, pattern=r"^\d{4}-\d{2}-\d{2}$", description="YYYY-MM-DD")


LISTING_FIELDS = tuple(Listing.model_fields)
REQUIRED_LISTING_FIELDS = tuple(name for name, info in Listing.model_fields.items() if info.is_required())
