"""Small node functions and programs the process tests run."""
