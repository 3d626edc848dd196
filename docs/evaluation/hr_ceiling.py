"""How high HR@10 can go on the Taobao sample by reordering the user's own items.

An analysis outside the service (issue 11): on the protocol of `kairos eval` (at every cart or
buy, rank before the event is revealed; one relevant item), the candidates are the user's last
50 distinct touched items, each with 20 features of its history (recency rank, ages, counts per
behaviour, category agreement, popularity so far, hour, ...). A gradient-boosted ranker
(LightGBM, lambdarank and binary) is trained on the questions before 2017-12-01 00:00 UTC+8 and
scored on the held-out last three days, beside recency alone. Items the user never touched are
left out: on this log they hold 0.2 % of the learned default's hits.

    pip install lightgbm scikit-learn numpy
    python3 docs/evaluation/hr_ceiling.py ../shared/datasets/taobao_userbehavior_sample/UserBehavior_sample.csv.gz
"""
import collections
import gzip
import math
import sys

import lightgbm as lgb
import numpy as np

KINDS = ["pv", "fav", "cart", "buy"]
CUT = 1512057600  # 2017-12-01 00:00 UTC+8
WIDTH = 20


def questions(path):
    rows = []
    for i, line in enumerate(gzip.open(path, "rt")):
        p = line.strip().split(",")
        if len(p) >= 5 and p[0].isdigit():
            rows.append((int(p[4]), i, p[0], p[1], p[2], p[3]))
    rows.sort()
    hist = collections.defaultdict(list)
    pop, pop_users, seen = collections.Counter(), collections.Counter(), set()
    out = []
    for t, _, u, item, cat, kind in rows:
        if kind in ("cart", "buy"):
            h = hist[u]
            info, order = {}, []
            for j in range(len(h) - 1, -1, -1):
                tt, ii, cc, kk = h[j]
                if ii not in info:
                    info[ii] = dict(rank=len(order), last=tt, since=len(h) - 1 - j, cnt=collections.Counter(), first=tt, cat=cc, last_cart=None, last_kind=kk)
                    order.append(ii)
                d = info[ii]
                d["cnt"][kk] += 1
                d["first"] = tt
                if kk == "cart" and d["last_cart"] is None:
                    d["last_cart"] = tt
            order = order[:50]
            last_cat = h[-1][2] if h else None
            cat_all = collections.Counter(x[2] for x in h)
            cat_recent = collections.Counter(x[2] for x in h[-10:])
            rows_of = []
            for ii in order:
                d = info[ii]
                rows_of.append([
                    d["rank"], math.log1p((t - d["last"]) / 60), math.log1p((t - d["first"]) / 60), d["since"],
                    d["cnt"]["pv"], d["cnt"]["fav"], d["cnt"]["cart"], d["cnt"]["buy"],
                    int(d["cat"] == last_cat), cat_all[d["cat"]], cat_recent[d["cat"]], len(order),
                    sum(1 for x in order[: d["rank"]] if info[x]["cat"] == d["cat"]),
                    math.log1p((t - h[-1][0]) / 60), math.log1p((t - d["last_cart"]) / 60) if d["last_cart"] else 99,
                    KINDS.index(d["last_kind"]), pop[ii], pop_users[ii], (t // 3600) % 24, len(h),
                ])
            label = order.index(item) if item in order else -1
            out.append((t, np.array(rows_of) if rows_of else np.zeros((0, WIDTH)), label))
        hist[u].append((t, item, cat, kind))
        pop[item] += 1
        if (u, item) not in seen:
            seen.add((u, item))
            pop_users[item] += 1
    return out


def hit_rate(qs, scorer, k=10):
    hits, ndcg = 0, 0.0
    for _, x, label in qs:
        if label < 0 or len(x) == 0:
            continue
        s = scorer(x)
        r = int((s > s[label]).sum())
        if r < k:
            hits += 1
            ndcg += 1 / math.log2(2 + r)
    return hits / len(qs), ndcg / len(qs)


def main(path):
    qs = questions(path)
    train = [q for q in qs if q[0] < CUT]
    test = [q for q in qs if q[0] >= CUT]
    print(f"{len(qs)} questions: {len(train)} before the held-out days, {len(test)} in them")
    print("HR@10, NDCG@10 on the held-out days")
    print("recency of the last touch: %.3f, %.3f" % hit_rate(test, lambda x: -x[:, 0]))
    xs, ys, groups = [], [], []
    for _, x, label in train:
        if label >= 0 and len(x) >= 2:
            y = np.zeros(len(x))
            y[label] = 1
            xs.append(x)
            ys.append(y)
            groups.append(len(x))
    x, y = np.vstack(xs), np.concatenate(ys)
    ranker = lgb.LGBMRanker(n_estimators=200, learning_rate=0.05, num_leaves=15, min_child_samples=20, verbose=-1)
    ranker.fit(x, y, group=groups)
    print("LightGBM lambdarank: %.3f, %.3f" % hit_rate(test, ranker.predict))
    binary = lgb.LGBMClassifier(n_estimators=200, learning_rate=0.05, num_leaves=15, verbose=-1)
    binary.fit(x, y)
    print("LightGBM binary: %.3f, %.3f" % hit_rate(test, lambda q: binary.predict_proba(q)[:, 1]))
    print("share of questions whose target the user touched before: %.3f" % (sum(1 for q in test if q[2] >= 0) / len(test)))


if __name__ == "__main__":
    main(sys.argv[1])
