"""videoktr.rewards"""
