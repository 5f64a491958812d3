"""videoktr.data"""
