"""videoktr.analysis"""
