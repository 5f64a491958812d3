"""videoktr.models"""
