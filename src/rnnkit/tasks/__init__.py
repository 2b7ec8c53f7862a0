"""Applications: one file per task (config, data + model, metrics, train / evaluate / predict)."""
