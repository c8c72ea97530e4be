"""Use cases: templates of several components (models, vector databases, Helm charts)
deployed as one pipeline (seed 004)."""
