"""scikit-learn's estimator checks on both estimators."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from lstmforecast import EXPECTED_FAILED_CHECKS, LSTMClassifier, LSTMRegressor


def _small(estimator_class):
    # Small, quick, deterministic instances (as scikit-learn does for its MLP); a
    # large learning rate so the check datasets are learnt in few epochs.
    return estimator_class(hidden_size=8, max_epochs=40, learning_rate=0.02,
                           batch_size=16, random_state=0)


ESTIMATORS = [_small(LSTMRegressor), _small(LSTMClassifier)]


@parametrize_with_checks(
    ESTIMATORS,
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS[type(est).__name__],
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
