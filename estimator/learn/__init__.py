"""Learning layer: families, features, data, predictors and their card, training, evaluation, batch prediction."""
