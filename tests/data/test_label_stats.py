"""data/label_stats: per-label counts, sums and means."""

import numpy as np

from napari_medgen.data.label_stats import label_means, label_sums


def test_label_means_and_sums_per_value_with_absent_labels_nan():
    labels = np.array([[[0, 1], [1, 1]]])
    image = np.array([[[5.0, 1.0], [2.0, 3.0]]])
    counts, sums = label_sums(image, labels, 3)
    assert counts.tolist() == [1, 3, 0] and sums.tolist() == [5.0, 6.0, 0.0]
    means = label_means(image, labels, 3)
    assert means[0] == 5.0 and means[1] == 2.0 and np.isnan(means[2])
