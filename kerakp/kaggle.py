"""Kaggle Facial Keypoints submissions: predict `test.csv` and fill `IdLookupTable.csv` as `RowId,Location`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kerakp.data.readers import KAGGLE_SIZE, read_kaggle, read_table
from kerakp.errors import KerakpError
from kerakp.inference import Predictor


def submission(predictor: Predictor, test_csv, lookup_csv) -> pd.DataFrame:
    """The competition's submission table: one row per lookup row, locations clipped to [0, 96]."""
    if predictor.schema.name != "kaggle15":
        raise KerakpError(f"the model predicts {predictor.schema.name}; a Kaggle submission needs a kaggle15 model")
    if predictor.box != "full":
        raise KerakpError("a Kaggle model crops the whole image: train it with face_box: image (kerakp/recipes/kaggle15.yaml)")
    test = read_kaggle(test_csv)
    lookup = read_table(lookup_csv)
    needed = {"RowId", "ImageId", "FeatureName"}
    if not needed <= set(lookup.columns):
        raise KerakpError(f"{lookup_csv}: needs columns RowId, ImageId, FeatureName (has {', '.join(lookup.columns)})")
    points = np.stack([p.points for p in predictor.predict_batch([test.image(i) for i in range(len(test))])])
    row_of = {Path(name).stem: i for i, name in enumerate(test.names)}
    column_of = {f"{name}_{axis}": (k, a) for k, name in enumerate(predictor.schema.names) for a, axis in enumerate("xy")}
    locations = np.empty(len(lookup))
    for j, (image_id, feature) in enumerate(zip(lookup["ImageId"], lookup["FeatureName"])):
        if image_id not in row_of:
            raise KerakpError(f"{lookup_csv} row {j + 2}: ImageId {image_id} is not in {test_csv}")
        if feature not in column_of:
            raise KerakpError(f"{lookup_csv} row {j + 2}: unknown FeatureName '{feature}'")
        locations[j] = points[(row_of[image_id], *column_of[feature])]
    return pd.DataFrame({"RowId": lookup["RowId"].astype(int), "Location": np.clip(locations, 0, KAGGLE_SIZE).round(4)})
