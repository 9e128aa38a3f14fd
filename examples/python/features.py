"""features: pixel statistics and a nearest-centroid classifier for the
handwritten digits of examples/ml/data, as a trellis library.

The set-up step runs once per library instance: it reads the training and
test rows (CSV: 64 pixels 0..16, then the label) that the workflow's split
task wrote, and computes the mean image of each digit. Calls then reuse
them. Standard library only.
"""

import csv

import trellis_library as tl

lib = tl.Library("features")

PIXELS = 64


def read_rows(path):
    with open(path, newline="") as f:
        return [([int(x) for x in row[:PIXELS]], int(row[PIXELS])) for row in csv.reader(f)]


def mean_image(images):
    return [sum(column) / len(images) for column in zip(*images)]


@lib.setup
def load():
    train, test = read_rows("train.csv"), read_rows("test.csv")
    by_digit = {d: [x for x, label in train if label == d] for d in range(10)}
    centroids = {d: mean_image(images) for d, images in by_digit.items()}
    tl.log("set-up: %d training rows, %d test rows" % (len(train), len(test)))
    return {"test": test, "by_digit": by_digit, "centroids": centroids}


def nearest(image, centroids):
    def distance(d):
        return sum((p - c) ** 2 for p, c in zip(image, centroids[d]))

    return min(range(10), key=distance)


@lib.function
def class_stats(args, state):
    """Per digit: training rows, mean pixel value, and the share of pixels
    that are dark (over 8) in the mean image."""
    stats = []
    for d, images in state["by_digit"].items():
        mean = state["centroids"][d]
        stats.append({
            "digit": d,
            "rows": len(images),
            "mean_pixel": round(sum(mean) / PIXELS, 3),
            "dark_share": round(sum(1 for p in mean if p > 8) / PIXELS, 3),
        })
    return stats


@lib.function
def evaluate(args, state):
    """Nearest-centroid accuracy on one shard of the test rows: those whose
    place modulo args["shards"] is args["shard"]."""
    shard, shards = args["shard"], args["shards"]
    rows = state["test"][shard::shards]
    correct = sum(1 for image, label in rows if nearest(image, state["centroids"]) == label)
    return {"shard": shard, "rows": len(rows), "correct": correct, "accuracy": round(correct / len(rows), 4)}


@lib.function
def confusion(args, state):
    """Accuracy on all the test rows, and the confusion matrix: row is the
    true digit, column the predicted one."""
    matrix = [[0] * 10 for _ in range(10)]
    for image, label in state["test"]:
        matrix[label][nearest(image, state["centroids"])] += 1
    correct = sum(matrix[d][d] for d in range(10))
    rows = len(state["test"])
    return {"rows": rows, "correct": correct, "accuracy": round(correct / rows, 4), "confusion": matrix}


if __name__ == "__main__":
    lib.serve()
