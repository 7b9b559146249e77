"""Synthetic CRM signups with realistic duplicate accounts and ground truth (see ``crm``)."""

from consumer.generate.crm import generate_crm, write_crm

__all__ = ["generate_crm", "write_crm"]
