"""videoktr.eval"""
