"""Test support code shared by every tier (the real control plane lives in ``controlplane``)."""
