"""Long-tail diagnostics from the stored cells: many/medium/few-shot class groups, per-class AP
against the class's training-set size, the protocol-inflation diagnostic and retrieval examples.

All of it reads ``benchmark.results.StoredResults`` (records and per-cell arrays) and nothing else;
none of it feeds the main tables (the inflation diagnostic in particular is never a table number).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .results import StoredResults

#: The long-tail recognition convention (Liu et al., "Large-scale long-tailed recognition in an open
#: world", CVPR 2019): many-shot classes have > 100 training items, few-shot < 20, medium-shot 20-100.
MANY_SHOT_ABOVE = 100
FEW_SHOT_BELOW = 20
SHOT_GROUPS = ("many_shot", "medium_shot", "few_shot")
SHOT_GROUP_TEXT = (f"many-shot: > {MANY_SHOT_ABOVE} training items, medium-shot: {FEW_SHOT_BELOW}-{MANY_SHOT_ABOVE}, "
                   f"few-shot: < {FEW_SHOT_BELOW} (absolute counts, the long-tail recognition convention)")
#: The trainer's per-epoch query MAP (a diagnostic, never a selection rule): a list of
#: {"epoch": 1-based int, "map": float} in record["training_log"].
QUERY_MAP_DIAGNOSTIC = "query_map_diagnostic"
TOP_K_EXAMPLES = 10


def shot_groups(train_class_sizes) -> dict[str, np.ndarray]:
    """Many / medium / few-shot classes by their absolute training-set size (see ``SHOT_GROUP_TEXT``)."""
    sizes = np.asarray(train_class_sizes)
    return {"many_shot": np.flatnonzero(sizes > MANY_SHOT_ABOVE),
            "medium_shot": np.flatnonzero((sizes >= FEW_SHOT_BELOW) & (sizes <= MANY_SHOT_ABOVE)),
            "few_shot": np.flatnonzero(sizes < FEW_SHOT_BELOW)}


# ---------------------------------------------------------------------------- per-class AP


def per_class_ap(results: StoredResults, frame: pd.DataFrame, policy: str = "tie_aware") -> pd.DataFrame:
    """Mean AP over each class's queries (mean over seeds) beside the class's training-set size:
    one row per method x IF x bits x class (columns method, imbalance_factor, bits, class,
    train_size, ap, n_queries). Cells without stored labels are left out."""
    rows = []
    for (method, factor, bits), group in frame.groupby(["method", "imbalance_factor", "bits"], sort=False):
        per_seed = []
        for cell_key in group["cell_key"]:
            arrays = results.arrays(cell_key)
            if "query_labels" not in arrays or "train_class_sizes" not in arrays:
                continue
            labels, sizes = arrays["query_labels"], arrays["train_class_sizes"]
            counts = np.bincount(labels, minlength=sizes.size)
            sums = np.bincount(labels, weights=arrays[f"ap_{policy}"], minlength=sizes.size)
            with np.errstate(invalid="ignore", divide="ignore"):
                per_seed.append(np.where(counts > 0, sums / np.maximum(counts, 1), np.nan))
        if not per_seed:
            continue
        ap = np.nanmean(np.stack(per_seed), axis=0) if len(per_seed) > 1 else per_seed[0]
        for c in np.flatnonzero(counts > 0):
            rows.append({"method": method, "imbalance_factor": factor, "bits": bits, "class": int(c),
                         "train_size": int(sizes[c]), "ap": float(ap[c]), "n_queries": int(counts[c])})
    return pd.DataFrame(rows, columns=["method", "imbalance_factor", "bits", "class", "train_size", "ap", "n_queries"])


# ---------------------------------------------------------------------------- protocol inflation


def inflation_table(results: StoredResults, frame: pd.DataFrame, policy: str = "tie_aware") -> pd.DataFrame:
    """For every cell whose trainer recorded the query MAP per epoch: the final-epoch MAP (the
    table's number, unchanged), the best MAP over the recorded points and the final epoch (what a
    best-on-query choice of epoch would have reported) and the difference ("inflation", >= 0).

    Columns: method, imbalance_factor, bits, seed, n_points, final_epoch, final_map, best_epoch,
    best_on_query_map, inflation, epochs, maps (the recorded curve)."""
    columns = ["method", "imbalance_factor", "bits", "seed", "n_points", "final_epoch", "final_map", "best_epoch",
               "best_on_query_map", "inflation", "epochs", "maps"]
    rows = []
    for row in frame.itertuples(index=False):
        record = results.records.get(row.cell_key) or {}
        points = (record.get("training_log") or {}).get(QUERY_MAP_DIAGNOSTIC)
        if not points:
            continue
        points = sorted(((int(p["epoch"]), float(p["map"])) for p in points), key=lambda p: p[0])
        epochs, maps = [p[0] for p in points], [p[1] for p in points]
        loss = (record.get("training_log") or {}).get("loss") or []
        final_epoch = max(len(loss), epochs[-1])
        final_map = float(getattr(row, f"map_{policy}"))
        candidates = [(final_map, final_epoch)] + [(m, e) for e, m in zip(epochs, maps) if e != final_epoch]
        best_map, best_epoch = max(candidates, key=lambda c: (c[0], -c[1]))
        rows.append({"method": row.method, "imbalance_factor": row.imbalance_factor, "bits": row.bits,
                     "seed": row.seed, "n_points": len(points), "final_epoch": final_epoch, "final_map": final_map,
                     "best_epoch": best_epoch, "best_on_query_map": best_map, "inflation": best_map - final_map,
                     "epochs": epochs, "maps": maps})
    return pd.DataFrame(rows, columns=columns)


def inflation_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds per method x IF x bits of the final MAP, best-on-query MAP and inflation
    (and the largest inflation of a seed)."""
    if table.empty:
        return pd.DataFrame()
    grouped = table.groupby(["method", "imbalance_factor", "bits"], sort=False)
    out = grouped.agg(final_map=("final_map", "mean"), best_on_query_map=("best_on_query_map", "mean"),
                      inflation=("inflation", "mean"), max_inflation=("inflation", "max"),
                      n_seeds=("seed", "count"), n_points=("n_points", "max")).reset_index()
    return out.sort_values(["imbalance_factor", "bits", "method"]).reset_index(drop=True)


def inflation_curves(table: pd.DataFrame) -> pd.DataFrame:
    """The recorded query-MAP curves, mean over seeds: method, imbalance_factor, bits, epoch, map."""
    rows = [{"method": r.method, "imbalance_factor": r.imbalance_factor, "bits": r.bits, "epoch": e, "map": m}
            for r in table.itertuples(index=False) for e, m in zip(r.epochs, r.maps)]
    if not rows:
        return pd.DataFrame(columns=["method", "imbalance_factor", "bits", "epoch", "map"])
    return pd.DataFrame(rows).groupby(["method", "imbalance_factor", "bits", "epoch"], sort=False)["map"] \
        .mean().reset_index()


# ---------------------------------------------------------------------------- retrieval examples


def hamming_top_k(packed_query_row: np.ndarray, packed_database: np.ndarray, k: int = TOP_K_EXAMPLES):
    """(database positions, Hamming distances) of the ``k`` nearest codes to one packed query code;
    ties broken by database index (a stable sort), so the list is reproducible."""
    xor = np.bitwise_xor(packed_database, packed_query_row[None, :])
    distances = np.unpackbits(xor, axis=1).sum(axis=1)
    order = np.argsort(distances, kind="stable")[:k]
    return order, distances[order]


def image_loader(data):
    """A function row -> image array (H, W) or (H, W, 3) for a dataset with images, else None:
    ``data.image_source.load_image`` when present; digits' 64 features are its 8x8 pixels."""
    if data is None:
        return None
    source = getattr(data, "image_source", None)
    if source is not None:
        return lambda row: np.asarray(source.load_image(int(row)))
    if data.name == "digits" and data.n_features == 64:
        return lambda row: np.asarray(data.features[int(row)], dtype=np.float32).reshape(8, 8)
    return None


def choose_example_methods(frame: pd.DataFrame, target: str | None, lthnet_displays, policy: str = "tie_aware"):
    """The methods the retrieval examples show, in one setting's rows: the best shallow method, the
    best deep baseline (a deep method that is not LTHNet) by the table's MAP, and ``target``
    (LTHNet (k=3) of the run) when present. Returns [(role, method display)]."""
    column = f"map_{policy}"
    means = frame.groupby(["method", "family"], sort=False)[column].mean().reset_index()
    chosen = []
    shallow = means[means["family"] != "deep"]
    if len(shallow):
        chosen.append(("best shallow", shallow.loc[shallow[column].idxmax(), "method"]))
    deep = means[(means["family"] == "deep") & ~means["method"].isin(list(lthnet_displays))]
    if len(deep):
        chosen.append(("best deep baseline", deep.loc[deep[column].idxmax(), "method"]))
    if target is not None and target in set(means["method"]):
        chosen.append(("LTHNet (k=3)", target))
    return chosen


def retrieval_examples(results: StoredResults, frame: pd.DataFrame, data, methods, n_queries: int = 3,
                       k: int = TOP_K_EXAMPLES) -> list[dict]:
    """Top-``k`` lists of ``n_queries`` tail-class queries for each chosen method of one setting.

    Queries: one per class from the classes with the fewest training items (ties by class index),
    the first query of each class (lowest query position), the same for every method. Each method's
    cell is its lowest seed. Returns rows {role, method, query (position), query_row, query_label,
    train_size, items: [{row, label, distance, correct}]}; [] when the data's query set is not the
    stored one (the data changed) or has no images."""
    load = image_loader(data)
    if load is None or not methods:
        return []
    cells = {}
    for role, method in methods:
        rows = frame[frame["method"] == method].sort_values("seed")
        if len(rows):
            cells[(role, method)] = results.arrays(rows["cell_key"].iloc[0])
    if not cells:
        return []
    first = next(iter(cells.values()))
    if "query_codes" not in first or "query_labels" not in first:
        return []
    query_labels, sizes = first["query_labels"], first["train_class_sizes"]
    if not (np.array_equal(data.labels[data.query_index], query_labels)
            and all(np.array_equal(data.labels[data.database_index], a["database_labels"]) for a in cells.values())):
        return []
    classes = [c for c in np.lexsort((np.arange(sizes.size), sizes)) if np.any(query_labels == c)][:n_queries]
    queries = [int(np.flatnonzero(query_labels == c)[0]) for c in classes]
    examples = []
    for q in queries:
        for (role, method), arrays in cells.items():
            order, distances = hamming_top_k(arrays["query_codes"][q], arrays["database_codes"], k)
            items = [{"row": int(data.database_index[j]), "label": int(arrays["database_labels"][j]),
                      "distance": int(d), "correct": bool(arrays["database_labels"][j] == query_labels[q])}
                     for j, d in zip(order, distances)]
            examples.append({"role": role, "method": method, "query": q, "query_row": int(data.query_index[q]),
                             "query_label": int(query_labels[q]), "train_size": int(sizes[query_labels[q]]),
                             "items": items})
    return examples
