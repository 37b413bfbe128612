"""Layers: wrappers around a port that add behaviour (metrics, fault injection) unseen by the adapter."""
