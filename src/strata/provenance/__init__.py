"""strata.provenance"""
