"""Quality gates of the digits mini LDM: VQ reconstruction PSNR, and the share of prior samples (quality/gates.py)
that a small classifier of real digits names with confidence."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from data.digits import digits
from quality.gates import reconstruction_psnr, sample_prior

CONFIDENT = 0.9


def digit_features(x: torch.Tensor) -> np.ndarray:
    """(B, 3, 32, 32) in [-1, 1] -> (B, 64): the channel mean pooled back to the data set's 8x8 grid."""
    return F.avg_pool2d(x.float().mean(1, keepdim=True), 4).flatten(1).cpu().numpy()


def digit_classifier():
    """Multinomial logistic regression on the train split's 8x8 features (deterministic, about a second)."""
    from sklearn.linear_model import LogisticRegression

    x, y = digits("train")
    return LogisticRegression(C=1.0, max_iter=5000).fit(digit_features(x), y.numpy())


def classify(classifier, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class, its probability) per image."""
    proba = classifier.predict_proba(digit_features(x))
    return proba.argmax(1), proba.max(1)


def gates(model, samples: int = 256, seed: int = 0) -> tuple[dict, torch.Tensor]:
    """Every gate of the model card, recomputed from the model (reproducible to round-off for a given model), and
    the prior samples they were measured on."""
    x_test, y_test = digits("test")
    clf = digit_classifier()
    pred_real, conf_real = classify(clf, x_test)
    drawn = sample_prior(model, samples, seed=seed)
    pred, conf = classify(clf, drawn)
    counts = np.bincount(pred[conf > CONFIDENT], minlength=10)
    return {
        "recon_psnr_test": reconstruction_psnr(model, x_test),
        "classifier_accuracy_test": float((pred_real == y_test.numpy()).mean()),
        "confident_share_test": float((conf_real > CONFIDENT).mean()),
        "confident_share_samples": float((conf > CONFIDENT).mean()),
        "confident_classes_samples": counts.tolist(),
        "samples": samples,
        "sample_seed": seed,
        "sampler": "EDM Heun, 18 steps, sigma 80 -> 0.01 (Karras rho 7), model.denoise",
    }, drawn
