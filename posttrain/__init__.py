"""Post-training logic with no Dagster in it (report §3.3-3.5), importable and testable without an
orchestrator:

* ``chat``: the chat format (roles, think blocks, tool calls), its HF chat template and loss weights;
* ``sft``: SFT conversations in both modes from the project's data, packed with assistant-only loss weights;
* ``sandbox``: untrusted Python in a fresh, limited subprocess;
* ``tool_tasks``: real tools, tool-use tasks with executable criteria, validated in the sandbox;
* ``prompts``: RL prompt families with verifier specs and a stable held-out split;
* ``verifiers``: rule-based rewards and the judge (teacher-backed or offline);
* ``objectives``: the AGAPO and GROUPER objectives as pure torch functions;
* ``policy_train``: the RL / preference stage process (rollouts, rewards, updates, router frozen, resume).
"""
