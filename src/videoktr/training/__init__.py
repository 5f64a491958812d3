"""videoktr.training"""
