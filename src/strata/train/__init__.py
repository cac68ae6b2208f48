"""strata.train"""
