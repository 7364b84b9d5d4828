"""Stage 1 -> stage 2 of the paper's schedule: detectron2's proposal pickle (``files``), the
memory-mapped store (``store``) and its data mapper (``mapper``), and the dump / check / attach
steps between the stages (``handoff``)."""

from .files import ProposalFileError, read_proposal_file, write_proposal_file
from .handoff import (
    attach_proposal_files,
    checked_proposal_files,
    checked_stage1_outputs,
    dump_proposals,
    stage1_proposals,
    write_stage1_proposals,
)
from .store import ProposalStore, write_proposal_store

__all__ = [
    "ProposalFileError",
    "ProposalStore",
    "attach_proposal_files",
    "checked_proposal_files",
    "checked_stage1_outputs",
    "dump_proposals",
    "read_proposal_file",
    "stage1_proposals",
    "write_proposal_file",
    "write_stage1_proposals",
    "write_proposal_store",
]
