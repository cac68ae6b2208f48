"""strata.workflow"""
