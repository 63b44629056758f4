"""hypersweep: hyperparameter search for deep learning (Optuna strategies, Ray
scheduling, MLflow tracking). The command line is `hypersweep` (hypersweep.cli.app)."""
