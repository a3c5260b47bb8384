"""The example app's services; ``../dependencies.py`` builds them once."""
